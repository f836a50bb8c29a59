/**
 * The serial console of a VM: qemu serves it on a unix socket (one client at a time; it logs to the VM's
 * serial log whether anyone is attached or not). Attaching joins a terminal to that socket until the
 * escape key is typed or the VM ends.
 */
import { createConnection } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { UncloudError } from '../core/errors.js';
import { SERIAL_CHARDEV } from '../core/qemu-argv.js';
import { withQmp } from './qmp.js';

/** Ctrl-] detaches, as in virsh console and telnet. */
export const ESCAPE_BYTE = 0x1d;
export const ESCAPE_NAME = 'Ctrl-]';

/** Whether a client is attached to the serial console now (qemu names a free socket "disconnected:…"). */
export async function consoleAttached(qmpSocket: string): Promise<boolean> {
  const chardevs = (await withQmp(qmpSocket, (qmp) => qmp.execute('query-chardev'))) as { label: string; filename: string }[];
  const serial = chardevs.find((c) => c.label === SERIAL_CHARDEV);
  return serial !== undefined && !serial.filename.startsWith('disconnected:');
}

export interface Terminal {
  input: Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  output: Writable;
}

/**
 * Join the terminal to the console socket. Resolves 'detached' when the escape key is typed (or input ends),
 * 'closed' when qemu closed the console (the VM ended). A terminal is in raw mode meanwhile, so every key,
 * Ctrl-C too, goes to the guest.
 */
export function attachConsole(path: string, term: Terminal, onConnected: () => void): Promise<'detached' | 'closed'> {
  return new Promise((resolve, reject) => {
    const { input, output } = term;
    const raw = input.isTTY === true && typeof input.setRawMode === 'function';
    const sock = createConnection(path);
    let connected = false;
    let finished = false;
    const finish = (how: 'detached' | 'closed'): void => {
      if (finished) return;
      finished = true;
      input.off('data', onInput);
      input.off('end', onEnd);
      if (raw) input.setRawMode!(false);
      input.pause();
      sock.end();
      sock.destroy();
      resolve(how);
    };
    const onInput = (d: Buffer): void => {
      const at = d.indexOf(ESCAPE_BYTE);
      if (at < 0) {
        sock.write(d);
        return;
      }
      if (at > 0) sock.write(d.subarray(0, at));
      finish('detached');
    };
    const onEnd = (): void => finish('detached');
    sock.on('connect', () => {
      connected = true;
      if (raw) input.setRawMode!(true);
      input.on('data', onInput);
      input.on('end', onEnd);
      input.resume();
      onConnected();
    });
    sock.on('data', (d) => output.write(d));
    sock.on('close', () => finish('closed'));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (connected) return finish('closed');
      finished = true;
      reject(new UncloudError('CONSOLE_UNAVAILABLE', `console ${path}: ${err.code === 'ENOENT' ? 'no such socket (is the VM running?)' : err.message}`));
    });
  });
}
