/** The QMP client against a real qemu (-machine none) and against sockets that misbehave. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QmpClient } from '../../src/qemu/qmp.js';
import { waitFor } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-qmp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('QMP client against a real qemu', () => {
  let qemu: ChildProcess;
  const sock = join(dir, 'real.sock');
  beforeAll(async () => {
    qemu = spawn('qemu-system-x86_64', ['-machine', 'none', '-display', 'none', '-monitor', 'none', '-S', '-qmp', `unix:${sock},server=on,wait=off`], { stdio: 'ignore' });
    await waitFor('qmp socket', async () => {
      try {
        (await QmpClient.connect(sock, 1000)).close();
        return true;
      } catch {
        return false;
      }
    });
  });
  afterAll(() => {
    qemu.kill('SIGKILL');
  });

  it('negotiates capabilities and runs commands', async () => {
    const qmp = await QmpClient.connect(sock);
    expect(qmp.greeting).toMatchObject({ version: { qemu: { major: expect.any(Number) } } });
    expect(await qmp.execute('query-status')).toMatchObject({ status: 'prelaunch', running: false });
    expect(await qmp.execute('query-name')).toEqual({});
    qmp.close();
  });

  it('turns a QMP error reply into an error naming the command', async () => {
    const qmp = await QmpClient.connect(sock);
    await expect(qmp.execute('no-such-command')).rejects.toThrow(/no-such-command failed: The command no-such-command has not been found/);
    qmp.close();
  });

  it('receives events: STOP after stop, RESUME after cont', async () => {
    const qmp = await QmpClient.connect(sock);
    const resumed = qmp.waitForEvent('RESUME', 5000);
    await qmp.execute('cont');
    expect((await resumed).event).toBe('RESUME');
    const stopped = qmp.waitForEvent('STOP', 5000);
    await qmp.execute('stop');
    expect((await stopped).event).toBe('STOP');
    qmp.close();
  });

  it('quit: qemu exits and the client reports the closed socket', async () => {
    const extra = join(dir, 'quit.sock');
    const q = spawn('qemu-system-x86_64', ['-machine', 'none', '-display', 'none', '-monitor', 'none', '-qmp', `unix:${extra},server=on,wait=off`], { stdio: 'ignore' });
    const exited = new Promise((r) => q.once('exit', r));
    const qmp = await waitFor('qmp', async () => QmpClient.connect(extra, 1000).catch(() => undefined));
    await qmp.execute('quit').catch(() => undefined);
    await exited;
    await expect(qmp.execute('query-status')).rejects.toThrow(/QMP .*quit\.sock: (connection closed|connection refused)/);
  });
});

describe('QMP client against misbehaving sockets', () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  function serve(path: string, onConn: (write: (s: string) => void, end: () => void, onLine: (cb: (l: string) => void) => void) => void): Promise<void> {
    server = createServer((c) => {
      let buf = '';
      const listeners: ((l: string) => void)[] = [];
      c.on('data', (d) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          for (const l of listeners) l(line);
        }
      });
      c.on('error', () => undefined);
      onConn((s) => c.write(s), () => c.destroy(), (cb) => listeners.push(cb));
    });
    return new Promise((r) => server!.listen(path, () => r()));
  }
  const greeting = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}\n';

  it('no socket: a clear error', async () => {
    await expect(QmpClient.connect(join(dir, 'absent.sock'))).rejects.toThrow(/QMP .*absent\.sock: no such socket \(is the VM running\?\)/);
  });

  it('never answers: a timeout error', async () => {
    const path = join(dir, 'silent.sock');
    await serve(path, () => undefined);
    await expect(QmpClient.connect(path, 300)).rejects.toThrow(/no greeting within 300 ms/);
  });

  it('answers the handshake, then never replies to a command: a timeout error', async () => {
    const path = join(dir, 'mute.sock');
    await serve(path, (write, _end, onLine) => {
      write(greeting);
      onLine((l) => {
        if (l.includes('qmp_capabilities')) write('{"return": {}}\n');
      });
    });
    const qmp = await QmpClient.connect(path, 300);
    await expect(qmp.execute('query-status')).rejects.toThrow(/no reply to query-status within 300 ms/);
    qmp.close();
  });

  it('closes mid-reply: the pending command fails as closed', async () => {
    const path = join(dir, 'half.sock');
    await serve(path, (write, end, onLine) => {
      write(greeting);
      onLine((l) => {
        if (l.includes('qmp_capabilities')) write('{"return": {}}\n');
        else {
          write('{"return": {"stat');
          setTimeout(end, 20);
        }
      });
    });
    const qmp = await QmpClient.connect(path, 2000);
    await expect(qmp.execute('query-status')).rejects.toThrow(/connection closed/);
  });

  it('speaks garbage: a protocol error', async () => {
    const path = join(dir, 'garbage.sock');
    await serve(path, (write) => write('this is not json\n'));
    await expect(QmpClient.connect(path, 2000)).rejects.toThrow(/unreadable message: this is not json/);
  });
});
