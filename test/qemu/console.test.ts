/**
 * The serial console: attaching joins a terminal to the console socket both ways until the escape key, the
 * end of input or qemu closing it; the terminal's raw mode is put back however it ends. Whether a client is
 * attached, from QMP's chardev list.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { UncloudError } from '../../src/core/errors.js';
import { attachConsole, consoleAttached, ESCAPE_BYTE, type Terminal } from '../../src/qemu/console.js';
import { type FakeQmp, fakeQmp } from '../helpers/fake-qmp.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest('uncloud-vm-console-');
let server: Server | undefined;
let qmp: FakeQmp | undefined;
afterEach(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  server = undefined;
  await qmp?.close();
  qmp = undefined;
});

/** qemu's console socket: what it receives, and the connection to write to or close. */
async function consoleSocket(): Promise<{ path: string; received: () => string; conn: Promise<Socket> }> {
  const path = join(tmp.path, 'console.sock');
  let got = '';
  let onConn: (c: Socket) => void = () => undefined;
  const conn = new Promise<Socket>((r) => (onConn = r));
  server = createServer((c) => {
    c.on('data', (d) => (got += d.toString('latin1')));
    c.on('error', () => undefined);
    onConn(c);
  });
  await new Promise<void>((r) => server!.listen(path, () => r()));
  return { path, received: () => got, conn };
}

/** A terminal: input we type into, output we read; raw-mode changes recorded. */
function terminal(tty = true): { term: Terminal; input: PassThrough; shown: () => string; rawModes: boolean[] } {
  const input = new PassThrough() as PassThrough & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  const output = new PassThrough();
  let shown = '';
  output.on('data', (d: Buffer) => (shown += d.toString('latin1')));
  const rawModes: boolean[] = [];
  if (tty) {
    input.isTTY = true;
    input.setRawMode = (raw: boolean) => rawModes.push(raw);
  }
  return { term: { input, output }, input, shown: () => shown, rawModes };
}

const until = async (cond: () => boolean): Promise<void> => {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
};

describe('attachConsole', () => {
  it('keys go to the guest, the guest\'s output to the terminal; the escape key detaches, what came before it is sent, what after it is not', async () => {
    const s = await consoleSocket();
    const t = terminal();
    let connected = 0;
    const attached = attachConsole(s.path, t.term, () => connected++);
    const conn = await s.conn;
    await until(() => connected === 1);
    expect(t.rawModes).toEqual([true]);
    t.input.write('ls\r');
    conn.write('login: ');
    await until(() => s.received() === 'ls\r' && t.shown() === 'login: ');
    t.input.write(Buffer.from([0x61, ESCAPE_BYTE, 0x62]));
    expect(await attached).toBe('detached');
    await new Promise((r) => setTimeout(r, 50));
    expect(s.received()).toBe('ls\ra');
    expect(t.rawModes).toEqual([true, false]);
    expect(connected).toBe(1);
  });

  it('the end of input detaches', async () => {
    const s = await consoleSocket();
    const t = terminal(false);
    const attached = attachConsole(s.path, t.term, () => t.input.end());
    expect(await attached).toBe('detached');
    expect(t.rawModes).toEqual([]);
  });

  it('qemu closing the console (the VM ended): closed, raw mode put back', async () => {
    const s = await consoleSocket();
    const t = terminal();
    const attached = attachConsole(s.path, t.term, () => undefined);
    (await s.conn).destroy();
    expect(await attached).toBe('closed');
    expect(t.rawModes).toEqual([true, false]);
  });

  it('no socket: CONSOLE_UNAVAILABLE naming it, raw mode never set', async () => {
    const t = terminal();
    const err = await attachConsole(join(tmp.path, 'absent.sock'), t.term, () => undefined).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UncloudError);
    expect((err as UncloudError).code).toBe('CONSOLE_UNAVAILABLE');
    expect((err as UncloudError).message).toMatch(/^console .*absent\.sock: no such socket \(is the VM running\?\)$/);
    expect(t.rawModes).toEqual([]);
  });
});

describe('consoleAttached', () => {
  it.each([
    { what: 'a client is attached', filename: 'unix:/run/x/console.sock,server=on', attached: true },
    { what: 'nobody is attached', filename: 'disconnected:unix:/run/x/console.sock,server=on', attached: false },
  ])('$what: $attached', async ({ filename, attached }) => {
    qmp = await fakeQmp(join(tmp.path, 'qmp.sock'), {
      on: { 'query-chardev': () => ({ return: [{ label: 'compat_monitor0', filename: 'stdio' }, { label: 'serial0', filename, 'frontend-open': true }] }) },
    });
    expect(await consoleAttached(qmp.path)).toBe(attached);
  });

  it('no serial chardev at all: not attached', async () => {
    qmp = await fakeQmp(join(tmp.path, 'qmp.sock'), { on: { 'query-chardev': () => ({ return: [{ label: 'other', filename: 'unix:/x' }] }) } });
    expect(await consoleAttached(qmp.path)).toBe(false);
  });
});
