/** Whole-file writes that a crash cannot leave half-done: temp file + fsync + rename (or link). */
import { closeSync, constants, fstatSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { UncloudError } from '../core/errors.js';
import { processStartTime } from './proc.js';

let counter = 0;

/** Temp files start with ".tmp-" so readers skip them and gc can sweep leftovers of killed writers. */
export const TMP_PREFIX = '.tmp-';

/** The pid of the process that wrote a temp file, from its name (null: not a name tempPath makes). */
export function tempWriter(name: string): number | null {
  const m = name.startsWith(TMP_PREFIX) ? /-(\d+)-\d+$/.exec(name) : null;
  return m ? Number(m[1]) : null;
}

/**
 * Remove a temp file a killed writer left: at once when its name says which process wrote it and that process
 * is gone (it can no longer link or rename it), else once it is older than `maxAgeMs` (the pid may be reused).
 */
export function sweepTemp(path: string, maxAgeMs: number, now = Date.now()): void {
  const writer = tempWriter(basename(path));
  if (writer !== null && processStartTime(writer) === null) {
    removeQuietly(path);
    return;
  }
  let mtime: number;
  try {
    mtime = statSync(path).mtimeMs;
  } catch {
    return;
  }
  if (now - mtime > maxAgeMs) removeQuietly(path);
}

function tempPath(path: string, dir: string): string {
  counter += 1;
  return join(dir, `${TMP_PREFIX}${basename(path)}-${process.pid}-${counter}`);
}

function writeTemp(path: string, data: string, mode: number, dir = dirname(path), durable = true): string {
  const tmp = tempPath(path, dir);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', mode);
    const buf = Buffer.from(data);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off);
    if (durable) fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    return tmp;
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    removeQuietly(tmp);
    throw writeFailed(path, err);
  }
}

export interface AtomicWriteOptions {
  /** The temp file is not fsynced before the rename (default true: it is). */
  durable?: boolean;
}

/** A file's new content, written to a temp file (in `tmpDir`) but not in place yet: staged by stageFile. */
export interface StagedFile {
  path: string;
  tmp: string;
}

/**
 * Several files made durable with one wait on the disk instead of one each: their temp files are written,
 * fsynced together (on libuv's threads, so the file system commits them at once), and only then put in place
 * one by one, in the caller's order (placeStaged, linkStaged). What readers see, and what a kill or a power
 * loss can leave, is as with writeFileAtomic or createFileExclusive one after the other. The caller removes
 * the temp files it did not place (removeStaged).
 */
export function stageFile(path: string, data: string, mode = 0o600, tmpDir?: string): StagedFile {
  return { path, tmp: writeTemp(path, data, mode, tmpDir, false) };
}

export async function syncStaged(files: StagedFile[]): Promise<void> {
  await Promise.all(
    files.map(async (f) => {
      try {
        const handle = await open(f.tmp, 'r');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
      } catch (err) {
        throw writeFailed(f.path, err);
      }
    }),
  );
}

/** Replace the file with its staged content (rename). */
export function placeStaged(f: StagedFile): void {
  try {
    renameSync(f.tmp, f.path);
  } catch (err) {
    removeQuietly(f.tmp);
    throw writeFailed(f.path, err);
  }
}

/** Create the file with its staged content only if it does not exist (link); false when it does. */
export function linkStaged(f: StagedFile): boolean {
  try {
    linkSync(f.tmp, f.path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw writeFailed(f.path, err);
  } finally {
    removeQuietly(f.tmp);
  }
}

export function removeStaged(files: StagedFile[]): void {
  for (const f of files) removeQuietly(f.tmp);
}

/**
 * Replace `path` with `data` atomically: readers see the old file or the new one, never a mix. `tmpDir` (same
 * file system) puts the temp file where leftovers are looked for. A kill at any instant leaves the old file or
 * the new one whatever `durable` says (the page cache outlives the process); `durable: false` is for records
 * that a power loss makes meaningless anyway (a running VM's run-dir record: every process it names dies with
 * the boot), where a crash may leave the file empty or old and its reader takes that as a dead VM's.
 */
export function writeFileAtomic(path: string, data: string, mode = 0o600, tmpDir?: string, opts: AtomicWriteOptions = {}): void {
  placeStaged({ path, tmp: writeTemp(path, data, mode, tmpDir, opts.durable ?? true) });
}

/**
 * Create `path` with `data` only if it does not exist, atomically and completely.
 * Returns false when the path is already taken (the exclusive claim lost). `tmpDir` (same file system) keeps
 * the temp file out of a directory that readers list.
 */
export function createFileExclusive(path: string, data: string, mode = 0o600, tmpDir?: string): boolean {
  return linkStaged({ path, tmp: writeTemp(path, data, mode, tmpDir) });
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
    if (!st.isFile() && !st.isDirectory()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTREG' });
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
