/**
 * A VM's logs on the state side (core/vm-files.ts `vmLogFiles`): the serial log qemu appends to and qemu's
 * stderr. Capped by rotation when a VM starts: a file over the cap becomes `<file>.1` (one older generation).
 */
import { closeSync, constants, existsSync, fstatSync, openSync, readSync, renameSync, rmSync, type Stats, statSync, writeSync } from 'node:fs';
import { UncloudError } from '../core/errors.js';
import type { VmLogFiles } from '../core/vm-files.js';
import { ensurePrivateDir } from './private-dir.js';

/** A log over this size at start is rotated. */
export const LOG_CAP_BYTES = 4 * 1024 * 1024;

export function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** What is in a log's place when it is not a regular file, for the one line that names it. */
function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

function notALog(path: string, kind: string): UncloudError {
  return new UncloudError('STATE_DAMAGED', `log ${path} is ${kind}, not a regular file; it was left untouched: remove it`);
}

/**
 * A log opened non-blocking, and only if it is a regular file: a FIFO in its place would block the open (a
 * writer waits for a reader) or every read, with the event loop, so not even a signal could end the command.
 */
function openLog(path: string, flags: number): number {
  let fd: number;
  try {
    fd = openSync(path, flags | constants.O_NONBLOCK, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // EISDIR: a directory opened for writing; ENXIO: a FIFO no one reads, opened for writing.
    if (code === 'EISDIR') throw notALog(path, 'a directory');
    if (code === 'ENXIO') throw notALog(path, 'a FIFO');
    throw err;
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw notALog(path, kindOf(st));
  }
  return fd;
}

function append(path: string, text: string): void {
  const fd = openLog(path, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT);
  try {
    const size = fstatSync(fd).size;
    const last = Buffer.alloc(1);
    // A guest's last line often has no newline: the header starts on a line of its own.
    const sep = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a ? '\n' : '';
    writeSync(fd, `${sep}${text}\n`);
  } finally {
    closeSync(fd);
  }
}

/**
 * Before qemu starts: make the log dir, rotate logs over the cap, and mark the start in both logs.
 * Returns where this run's part of qemu's stderr log begins.
 */
export function openVmLogs(logs: VmLogFiles, header: string, capBytes = LOG_CAP_BYTES): number {
  ensurePrivateDir(logs.dir);
  // Both checked before either is written: a start refused for one log leaves no header in the other.
  for (const file of [logs.serial, logs.qemu]) {
    const st = statSync(file, { throwIfNoEntry: false });
    if (st && !st.isFile()) throw notALog(file, kindOf(st));
  }
  for (const file of [logs.serial, logs.qemu]) {
    if (sizeOf(file) > capBytes) renameSync(file, `${file}.1`);
    append(file, header);
  }
  return sizeOf(logs.qemu);
}

/** The bytes of a log from an offset on (none when it does not exist; an error naming it when it is not a regular file). */
export function readBytesFrom(path: string, offset: number): Buffer {
  let fd: number;
  try {
    fd = openLog(path, constants.O_RDONLY);
  } catch (err) {
    if (err instanceof UncloudError) throw err;
    return Buffer.alloc(0);
  }
  try {
    const size = fstatSync(fd).size;
    if (size <= offset) return Buffer.alloc(0);
    const buf = Buffer.alloc(size - offset);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

export function readFrom(path: string, offset: number): string {
  return readBytesFrom(path, offset).toString('utf8');
}

/**
 * Write what is appended to a log from `offset` on, until `stop` aborts. A file that shrank was rotated
 * (a restart): it is read again from its start.
 */
export async function followLog(path: string, offset: number, write: (chunk: Buffer) => void, stop: AbortSignal, pollMs = 200): Promise<void> {
  let at = offset;
  while (!stop.aborted) {
    const size = sizeOf(path);
    if (size < at) at = 0;
    if (size > at) {
      const chunk = readBytesFrom(path, at);
      at += chunk.length;
      write(chunk);
    }
    // One abort listener per wait, removed when the wait ends: a long follow adds none that pile up.
    await new Promise<void>((r) => {
      const onAbort = () => (clearTimeout(timer), r());
      const timer = setTimeout(() => (stop.removeEventListener('abort', onAbort), r()), pollMs);
      stop.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** The files of a log, older generation first, that exist. */
export function logGenerations(path: string): string[] {
  return [`${path}.1`, path].filter((p) => existsSync(p));
}

export function hasLogs(logs: VmLogFiles): boolean {
  return existsSync(logs.dir);
}

export function removeVmLogs(logs: VmLogFiles): void {
  rmSync(logs.dir, { recursive: true, force: true });
}
