/**
 * A scripted QMP server on a unix socket, standing in for qemu's: it keeps a run state, answers the commands
 * uncloud-vm sends (query-status, stop, cont, set-action, system_reset, system_powerdown, quit) as qemu does,
 * emits qemu's events, and logs every command. `on` overrides a command: return a reply, or 'hangup' to close
 * the connection halfway through a reply, or 'silent' to never answer.
 */
import { rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';

export interface QmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
}

export type QmpReply = { return: unknown } | { error: { class: string; desc: string } } | 'hangup' | 'silent';

export interface FakeQmp {
  path: string;
  /** qemu's run state as query-status reports it. */
  status: string;
  /** Every command received, in order (capabilities negotiation left out). */
  log: QmpCommand[];
  /** Send an event to every connected client. */
  emit: (event: string, data?: unknown) => void;
  /** Close every connection (qemu's socket going away). */
  hangup: () => void;
  /** Names of the commands received, in order. */
  names: () => string[];
  close: () => Promise<void>;
}

export interface FakeQmpOptions {
  status?: string;
  on?: Record<string, (cmd: QmpCommand, q: FakeQmp) => QmpReply | undefined>;
}

export async function fakeQmp(path: string, opts: FakeQmpOptions = {}): Promise<FakeQmp> {
  const conns = new Set<Socket>();
  const write = (c: Socket, msg: unknown): void => {
    if (!c.destroyed) c.write(`${JSON.stringify(msg)}\n`);
  };
  const q: FakeQmp = {
    path,
    status: opts.status ?? 'running',
    log: [],
    emit: (event, data) => {
      for (const c of conns) write(c, { event, ...(data === undefined ? {} : { data }), timestamp: { seconds: 0, microseconds: 0 } });
    },
    hangup: () => {
      for (const c of conns) c.destroy();
    },
    names: () => q.log.map((c) => c.execute),
    close: () =>
      new Promise((resolve) => {
        for (const c of conns) c.destroy();
        server.close(() => resolve());
      }),
  };
  const builtIn = (cmd: QmpCommand): QmpReply => {
    switch (cmd.execute) {
      case 'query-status':
        return { return: { status: q.status, running: q.status === 'running' } };
      case 'stop':
        q.status = 'paused';
        setImmediate(() => q.emit('STOP'));
        return { return: {} };
      case 'cont':
        q.status = 'running';
        setImmediate(() => q.emit('RESUME'));
        return { return: {} };
      case 'system_reset':
        setImmediate(() => q.emit('RESET', { guest: false, reason: 'host-qmp-system-reset' }));
        return { return: {} };
      case 'set-action':
      case 'system_powerdown':
      case 'quit':
        return { return: {} };
      default:
        return { error: { class: 'CommandNotFound', desc: `The command ${cmd.execute} has not been found` } };
    }
  };
  rmSync(path, { force: true });
  const server = createServer((c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
    c.on('error', () => undefined);
    let buf = '';
    write(c, { QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: '' }, capabilities: [] } });
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const cmd = JSON.parse(line) as QmpCommand;
        if (cmd.execute === 'qmp_capabilities') {
          write(c, { return: {} });
          continue;
        }
        q.log.push(cmd);
        const reply = opts.on?.[cmd.execute]?.(cmd, q) ?? builtIn(cmd);
        if (reply === 'silent') continue;
        if (reply === 'hangup') {
          c.write('{"return": {"sta');
          c.destroy();
          return;
        }
        write(c, reply);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, () => resolve()));
  return q;
}
