/** A minimal QMP exchange for tests: connect, negotiate, run one command, return its reply. */
import { createConnection } from 'node:net';

export function qmpCommand(socket: string, execute: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    let buf = '';
    let step = 0;
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`QMP ${execute}: no answer`));
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
        if (msg.QMP && step === 0) {
          step = 1;
          conn.write(`${JSON.stringify({ execute: 'qmp_capabilities' })}\n`);
        } else if ('return' in msg && step === 1) {
          step = 2;
          conn.write(`${JSON.stringify({ execute })}\n`);
        } else if (('return' in msg || 'error' in msg) && step === 2) {
          clearTimeout(timer);
          conn.end();
          resolve(msg);
        }
      }
    });
  });
}
