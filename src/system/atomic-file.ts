/** Whole-file writes that a crash cannot leave half-done: temp file + fsync + rename (or link). */
import { closeSync, constants, fstatSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { UncloudError } from '../core/errors.js';

let counter = 0;

/** Temp files start with ".tmp-" so readers skip them and gc can sweep leftovers of killed writers. */
export const TMP_PREFIX = '.tmp-';

function tempPath(path: string, dir: string): string {
  counter += 1;
  return join(dir, `${TMP_PREFIX}${basename(path)}-${process.pid}-${counter}`);
}

function writeTemp(path: string, data: string, mode: number, dir = dirname(path)): string {
  const tmp = tempPath(path, dir);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', mode);
    const buf = Buffer.from(data);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    return tmp;
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    removeQuietly(tmp);
    throw writeFailed(path, err);
  }
}

/** Replace `path` with `data` atomically: readers see the old file or the new one, never a mix. */
export function writeFileAtomic(path: string, data: string, mode = 0o600): void {
  const tmp = writeTemp(path, data, mode);
  try {
    renameSync(tmp, path);
  } catch (err) {
    removeQuietly(tmp);
    throw writeFailed(path, err);
  }
}

/**
 * Create `path` with `data` only if it does not exist, atomically and completely.
 * Returns false when the path is already taken (the exclusive claim lost). `tmpDir` (same file system) keeps
 * the temp file out of a directory that readers list.
 */
export function createFileExclusive(path: string, data: string, mode = 0o600, tmpDir?: string): boolean {
  const tmp = writeTemp(path, data, mode, tmpDir);
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw writeFailed(path, err);
  } finally {
    removeQuietly(tmp);
  }
}

/**
 * A whole file's text, or null when it does not exist. Opened non-blocking, and only a regular file or a
 * directory (EISDIR) is read: a FIFO or a device in a record's place would hang every verb that reads it, or
 * never end (ENOTREG, "not a regular file").
 */
export function readTextIfExists(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() && !st.isDirectory()) throw Object.assign(new Error('ENOTREG: not a regular file, read'), { code: 'ENOTREG' });
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

function writeFailed(path: string, err: unknown): UncloudError {
  const e = err as NodeJS.ErrnoException;
  if (e instanceof UncloudError) return e;
  const why = e.code === 'ENOSPC' ? 'no space left on device' : e.code === 'EACCES' ? 'permission denied' : e.message;
  return new UncloudError('WRITE_FAILED', `cannot write ${path}: ${why}; the previous state is kept`);
}
