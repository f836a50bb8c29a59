/**
 * A QMP client over qemu's unix socket: capabilities handshake, commands with replies, events, timeouts.
 * Every failure is an UncloudError naming the socket: gone, refused, closed mid-reply, or silent too long.
 */
import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { type ErrorCode, UncloudError } from '../core/errors.js';

export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  command: string;
}

export class QmpClient extends EventEmitter {
  private buf = '';
  private pending: Pending[] = [];
  private closedError: UncloudError | undefined;
  greeting: unknown;

  private constructor(
    private readonly sock: Socket,
    private readonly path: string,
    private readonly timeoutMs: number,
  ) {
    super();
  }

  /** Connect and negotiate capabilities. */
  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    const sock = createConnection(path);
    const client = new QmpClient(sock, path, timeoutMs);
    const greeting = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(client.fail(`no greeting within ${timeoutMs} ms`, 'QMP_TIMEOUT')), timeoutMs);
      client.once('greeting', (g) => {
        clearTimeout(timer);
        resolve(g);
      });
      client.once('closed', (err: Error) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => client.onData(d));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'ENOENT'
          ? 'no such socket (is the VM running?)'
          : err.code === 'ECONNREFUSED'
            ? 'connection refused (qemu is gone)'
            : err.code === 'ECONNRESET' || err.code === 'EPIPE'
              ? 'connection closed'
              : err.message;
      client.onClose(client.fail(why, 'QMP_UNAVAILABLE'));
    });
    sock.on('close', () => client.onClose(client.fail('connection closed', 'QMP_CLOSED')));
    try {
      client.greeting = await greeting;
      await client.execute('qmp_capabilities');
    } catch (err) {
      sock.destroy();
      throw err;
    }
    return client;
  }

  /** Run a command and return its "return" value; a QMP error reply is thrown. */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = this.pending.filter((p) => p.timer !== timer);
        reject(this.fail(`no reply to ${command} within ${this.timeoutMs} ms`, 'QMP_TIMEOUT'));
      }, this.timeoutMs);
      this.pending.push({ resolve, reject, timer, command });
      this.sock.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    });
  }

  /** Resolve on the next event of that name, or reject after timeoutMs. */
  waitForEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (ev: QmpEvent): void => {
        if (ev.event !== name) return;
        cleanup();
        resolve(ev);
      };
      const onClosed = (err: Error): void => {
        cleanup();
        reject(err);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(this.fail(`no ${name} event within ${timeoutMs} ms`, 'QMP_TIMEOUT'));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('closed', onClosed);
      };
      this.on('event', onEvent);
      this.once('closed', onClosed);
    });
  }

  close(): void {
    this.sock.destroy();
  }

  private fail(why: string, code: ErrorCode): UncloudError {
    return new UncloudError(code, `QMP ${this.path}: ${why}`);
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        this.onClose(this.fail(`unreadable message: ${line.slice(0, 80)}`, 'QMP_PROTOCOL'));
        this.sock.destroy();
        return;
      }
      if ('QMP' in msg) this.emit('greeting', msg.QMP);
      else if ('event' in msg) this.emit('event', msg as unknown as QmpEvent);
      else if ('return' in msg || 'error' in msg) {
        const p = this.pending.shift();
        if (!p) continue;
        clearTimeout(p.timer);
        if ('error' in msg) {
          const e = msg.error as { class?: string; desc?: string };
          p.reject(this.fail(`${p.command} failed: ${e.desc ?? e.class ?? 'error'}`, 'QMP_ERROR'));
        } else p.resolve(msg.return);
      }
    }
  }

  private onClose(err: UncloudError): void {
    if (this.closedError) return;
    this.closedError = err;
    for (const p of this.pending) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending = [];
    this.emit('closed', err);
  }
}

/** Connect, run `fn` with the client, close. */
export async function withQmp<T>(path: string, fn: (qmp: QmpClient) => Promise<T>, timeoutMs = 3000): Promise<T> {
  const qmp = await QmpClient.connect(path, timeoutMs);
  try {
    return await fn(qmp);
  } finally {
    qmp.close();
  }
}

/**
 * Wait until qemu answers on its QMP socket (it greets only once it has started for good), or `gone()` says
 * qemu ended, or the time is up.
 */
export async function waitForQmp(path: string, gone: () => boolean, timeoutMs: number): Promise<'ready' | 'gone' | 'timeout'> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gone()) return 'gone';
    try {
      (await QmpClient.connect(path, 2000)).close();
      return 'ready';
    } catch {
      if (gone()) return 'gone';
      if (Date.now() > deadline) return 'timeout';
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
