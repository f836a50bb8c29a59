/** A minimal QMP client for tests, independent of the one under test: connect, negotiate, send commands. */
import { createConnection } from 'node:net';

export interface RawQmp {
  /** Run a command; resolves with qemu's whole reply ({return} or {error}). */
  send: (execute: string) => Promise<unknown>;
  close: () => void;
}

/** Connect and negotiate capabilities; the connection stays open until close(). */
export function qmpConnect(socket: string): Promise<RawQmp> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    let buf = '';
    const waiting: ((msg: unknown) => void)[] = [];
    const send = (execute: string) =>
      new Promise<unknown>((r) => {
        waiting.push(r);
        conn.write(`${JSON.stringify({ execute })}\n`);
      });
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`QMP ${socket}: no answer`));
    }, 10_000);
    conn.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    conn.on('data', (d) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (msg.QMP) {
          void send('qmp_capabilities').then(() => {
            clearTimeout(timer);
            resolve({ send, close: () => conn.destroy() });
          });
        } else if ('return' in msg || 'error' in msg) waiting.shift()?.(msg);
      }
    });
  });
}

/** Connect, run one command, disconnect: its reply. */
export async function qmpCommand(socket: string, execute: string): Promise<unknown> {
  const qmp = await qmpConnect(socket);
  try {
    return await qmp.send(execute);
  } finally {
    qmp.close();
  }
}
