/**
 * Lease files read a page at a time, in the order given (`mac list` reads every one). Opening, reading and
 * closing a file is three system calls, about half of a large listing's time, so from READ_AHEAD_FROM files
 * on a worker thread reads the pages ahead while this thread parses and prints the ones before: the system
 * calls run beside the parsing, on another core. The worker stays at most AHEAD pages ahead, so memory does
 * not grow with the pool. It reads only: each listing reads the files as they are, nothing is kept between
 * listings, so no crash or kill can make a listing show what the files do not hold.
 *
 * A reader that prints the records as JSON (`mac list --json`) may ask for them printed too (TextPage.json):
 * printJson prints a lease in the form this tool writes by a pattern, a fraction of what JSON.stringify of
 * the parsed lease costs. It runs in this thread: printed in the worker, the text cost more to send here
 * than to print.
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { WRITTEN_LEASE_RE } from './lease-text.js';

/** A file's text; null: it vanished meanwhile; { error }: it could not be read (the message says why). */
export type FileText = string | null | { error: string };

/** Files from which a worker reads ahead; fewer are read here (starting a worker costs ~20-30 ms). */
export const READ_AHEAD_FROM = 10_000;
/** Pages the worker may read before this thread has taken them. */
const AHEAD = 4;
/** A lease file is small: one buffer serves every read (a readFileSync per file costs twice as much). */
const BUF_SIZE = 16 * 1024;

type Fs = Pick<typeof import('node:fs'), 'openSync' | 'readSync' | 'closeSync' | 'readFileSync' | 'fstatSync'>;
// This thread's calls (named imports: a namespace import of node:fs makes the build copy the whole of fs at start-up).
const fs: Fs = { openSync, readSync, closeSync, readFileSync, fstatSync };

// readText and readPage also run in the worker, compiled there from their source text: they use nothing but
// their arguments.

/**
 * A small file's text through `buf` (a larger one is read whole), or null when it does not exist. Opened
 * non-blocking (O_RDONLY | O_NONBLOCK on Linux: a literal, as this runs in the worker too), so a FIFO in a
 * file's place is "not a regular file" instead of hanging every reader; so is a device that fills `buf`
 * (it would be read for ever).
 */
export function readText(io: Fs, path: string, buf: Buffer): string | null {
  let fd: number;
  try {
    fd = io.openSync(path, 0o4000);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let n: number;
  try {
    n = io.readSync(fd, buf, 0, buf.length, 0);
    if (n === buf.length && !io.fstatSync(fd).isFile()) throw new Error('not a regular file');
  } catch (err) {
    // A FIFO cannot be read at an offset (ESPIPE), nor without a writer (EAGAIN).
    const code = (err as NodeJS.ErrnoException).code;
    throw code === 'ESPIPE' || code === 'EAGAIN' ? new Error('not a regular file') : err;
  } finally {
    io.closeSync(fd);
  }
  if (n < buf.length) return buf.toString('utf8', 0, n);
  try {
    return io.readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** The texts of names[from, to) in dir. */
function readPage(io: Fs, dir: string, names: string[], from: number, to: number, buf: Buffer, read: typeof readText): FileText[] {
  const texts: FileText[] = [];
  for (let i = from; i < to; i++) {
    try {
      texts.push(read(io, `${dir}/${names[i]}`, buf));
    } catch (err) {
      texts.push({ error: (err as Error).message });
    }
  }
  return texts;
}

let buf: Buffer | undefined;

/** One file's text (readText through this thread's buffer). */
export function readFileText(path: string): string | null {
  return readText(fs, path, (buf ??= Buffer.alloc(BUF_SIZE)));
}

/** As readFileText, but a file that cannot be read gives { error } (what a page holds for it). */
export function fileText(path: string): FileText {
  try {
    return readFileText(path);
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** Lease file names and their texts, one page. */
export interface TextPage {
  names: string[];
  texts: FileText[];
  /** Asked for with `json`: each text parsed and printed as an element of a JSON array (printJson), null for one that is not JSON. */
  json?: (string | null)[];
}

export interface ReadOptions {
  /** Files from which a worker reads ahead (default READ_AHEAD_FROM). */
  readAheadFrom?: number;
  /** The reader prints the records as JSON: give them printed (TextPage.json). */
  json?: boolean;
  /** Tests: given the worker when it starts (to end it mid-listing, say). */
  onWorker?: (worker: Worker) => void;
}

/**
 * The files `list()` names in `dir`, `size` at a time. When the directory looks large (ext4 spends ~40 bytes
 * on an entry, tmpfs 20: it is a guess, and a wrong one costs time only), the worker is started before
 * `list()` runs, so it boots while the names are read.
 */
export async function* readPages(dir: string, list: () => string[], size: number, opts: ReadOptions = {}): AsyncGenerator<TextPage> {
  const readAheadFrom = opts.readAheadFrom ?? READ_AHEAD_FROM;
  const start = () => new ReadAhead(dir, opts.onWorker);
  const give = opts.json === true ? (page: TextPage) => ({ ...page, json: page.texts.map(printJson) }) : (page: TextPage) => page;
  let ahead = looksLarge(dir, readAheadFrom) ? start() : null;
  try {
    const names = list();
    if (names.length >= readAheadFrom) {
      ahead ??= start();
      for await (const page of ahead.pages(names, size)) yield give(page);
      return;
    }
    for (let from = 0; from < names.length; from += size) yield give(readHere(dir, names, from, size));
  } finally {
    ahead?.stop();
  }
}

/** The page of names from `from` on, read in this thread. */
function readHere(dir: string, names: string[], from: number, size: number): TextPage {
  const to = Math.min(from + size, names.length);
  return { names: names.slice(from, to), texts: readPage(fs, dir, names, from, to, (buf ??= Buffer.alloc(BUF_SIZE)), readText) };
}

function looksLarge(dir: string, files: number): boolean {
  try {
    return statSync(dir).size >= 32 * files;
  } catch {
    return false;
  }
}

/**
 * A text parsed and printed as TextPage.json has it: `JSON.stringify([JSON.parse(text)], null, 2)` without
 * its brackets, null when it is not JSON.
 *
 * A lease in the form this tool writes (WRITTEN_LEASE_RE) is printed with its values as they stand: the same
 * bytes as JSON.parse and JSON.stringify give, at a fraction of their cost (they were most of a large
 * listing's printing). Any other text goes through JSON.parse and JSON.stringify.
 */
export function printJson(text: FileText): string | null {
  if (typeof text !== 'string') return null;
  const m = WRITTEN_LEASE_RE.exec(text);
  if (m !== null) {
    const [, mac, uuid, name, nic, host, owners, created] = m;
    const vm = name === undefined ? 'null' : `{\n${uuid === undefined ? '' : `      "uuid": "${uuid}",\n`}      "name": "${name}"\n    }`;
    const ownersText = owners === '' ? '[]' : `[${owners!.replace(/\{"pid":([0-9]+),"startTime":([0-9]+)\}/g, '\n      {\n        "pid": $1,\n        "startTime": $2\n      }')}\n    ]`;
    return `  {\n    "version": 1,\n    "mac": "${mac}",\n    "vm": ${vm},\n    "nic": ${nic},\n    "host": "${host}",\n    "owners": ${ownersText},\n    "created": "${created}"\n  }`;
  }
  try {
    return JSON.stringify([JSON.parse(text)], null, 2).slice(2, -2);
  } catch {
    return null;
  }
}

/**
 * The worker: waits for the names, then reads page after page, waiting while AHEAD of them are not taken yet
 * (`taken` counts them).
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const readText = (${readText.toString()});
const readPage = (${readPage.toString()});
const { dir, ahead } = workerData;
const taken = new Int32Array(workerData.taken);
parentPort.once('message', ({ list, size }) => {
  const names = list.split('\\0');
  const buf = Buffer.alloc(${BUF_SIZE});
  for (let page = 0, from = 0; from < names.length; page++, from += size) {
    for (let seen = Atomics.load(taken, 0); page - seen >= ahead; seen = Atomics.load(taken, 0)) Atomics.wait(taken, 0, seen);
    const texts = readPage(fs, dir, names, from, Math.min(from + size, names.length), buf, readText);
    parentPort.postMessage(texts);
  }
});`;

/**
 * A worker thread reading lease files ahead of this one. Should it fail (a thread it cannot start, say),
 * the pages it has not given are read in this thread: it only makes a listing faster.
 */
class ReadAhead {
  private readonly worker: Worker;
  private readonly taken = new Int32Array(new SharedArrayBuffer(4));
  private readonly ready: FileText[][] = [];
  /** It ended (an error, or its exit) and has given all it will: the rest is read here. */
  private gone = false;
  private wake: () => void = () => undefined;

  constructor(
    private readonly dir: string,
    onWorker?: (worker: Worker) => void,
  ) {
    // stdout/stderr kept apart: piping them to this process's would create process.stdout (cli/output.ts).
    this.worker = new Worker(WORKER_SOURCE, { eval: true, stdout: true, stderr: true, workerData: { dir, ahead: AHEAD, taken: this.taken.buffer } });
    this.worker.on('message', (texts: FileText[]) => {
      if (!this.gone) this.ready.push(texts);
      this.wake();
    });
    for (const event of ['error', 'exit']) {
      this.worker.on(event, () => {
        this.gone = true;
        this.wake();
      });
    }
    onWorker?.(this.worker);
  }

  async *pages(names: string[], size: number): AsyncGenerator<TextPage> {
    // One string is cheaper to send than 100,000; a file name cannot hold a NUL.
    this.worker.postMessage({ list: names.join('\0'), size });
    for (let from = 0; from < names.length; from += size) {
      while (this.ready.length === 0 && !this.gone) await new Promise<void>((resolve) => (this.wake = resolve));
      const texts = this.ready.shift();
      if (texts === undefined) {
        yield readHere(this.dir, names, from, size);
        continue;
      }
      Atomics.add(this.taken, 0, 1);
      Atomics.notify(this.taken, 0);
      yield { names: names.slice(from, from + size), texts };
    }
  }

  stop(): void {
    void this.worker.terminate();
  }
}
