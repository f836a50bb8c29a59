/** Lease files read a page at a time: in this thread and through the read-ahead worker, with the same result. */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FileText, readPages } from '../../src/store/file-lease-pages.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-pages-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** This process's threads (a worker is one). */
const threads = () => readdirSync('/proc/self/task').length;

/** Waits until the threads are back to `n` (a terminated worker's thread ends a moment later); fails after 10 s. */
async function threadsBackTo(n: number): Promise<void> {
  for (let i = 0; threads() > n; i++) {
    if (i > 1000) throw new Error(`${threads()} threads, not back to ${n}: a worker was left running`);
    await sleep(10);
  }
}

async function collect(list: () => string[], size: number, readAheadFrom: number, pause = 0) {
  const pages: { names: string[]; texts: FileText[] }[] = [];
  for await (const page of readPages(dir, list, size, readAheadFrom)) {
    pages.push(page);
    if (pause) await sleep(pause);
  }
  return pages;
}

describe('readPages', () => {
  it('gives each named file its text, null for one that is gone, the error for one that cannot be read', async () => {
    writeFileSync(join(dir, 'a.json'), '{"a":1}\n');
    writeFileSync(join(dir, 'big.json'), 'x'.repeat(40_000)); // past the shared buffer: read whole
    writeFileSync(join(dir, 'empty.json'), '');
    mkdirSync(join(dir, 'dir.json'));
    writeFileSync(join(dir, 'new\nline.json'), 'n'); // a name may hold anything but '/' and NUL
    const names = ['a.json', 'big.json', 'dir.json', 'empty.json', 'gone.json', 'new\nline.json'];
    const want = [
      { names: ['a.json', 'big.json'], texts: ['{"a":1}\n', 'x'.repeat(40_000)] },
      { names: ['dir.json', 'empty.json'], texts: [{ error: expect.stringMatching(/^EISDIR/) }, ''] },
      { names: ['gone.json', 'new\nline.json'], texts: [null, 'n'] },
    ];
    // Read here (fewer files than the threshold) and by the worker (threshold 1): the same pages.
    expect(await collect(() => names, 2, 100)).toEqual(want);
    expect(await collect(() => names, 2, 1)).toEqual(want);
  });

  it('the worker reads many pages in order, also when the reader takes them slowly (it waits, then goes on)', async () => {
    const names = Array.from({ length: 40 }, (_, i) => `${String(i).padStart(3, '0')}.json`);
    for (const n of names) writeFileSync(join(dir, n), n);
    const pages = await collect(() => names, 3, 1, 5);
    expect(pages.map((p) => p.names.length)).toEqual([...Array(13).fill(3), 1]);
    expect(pages.flatMap((p) => p.texts)).toEqual(names);
    expect(pages.flatMap((p) => p.names)).toEqual(names);
  });

  it('a reader that stops early stops the worker: its thread ends', async () => {
    const names = Array.from({ length: 30 }, (_, i) => `${i}.json`);
    for (const n of names) writeFileSync(join(dir, n), n);
    const before = threads();
    let seen = 0;
    for await (const page of readPages(dir, () => names, 2, 1)) {
      seen += page.names.length;
      expect(threads()).toBeGreaterThan(before); // the worker runs (it waits for the pages to be taken)
      if (seen >= 4) break;
    }
    expect(seen).toBe(4);
    await threadsBackTo(before);
  });

  it('an error while listing stops a worker started early for a large directory', async () => {
    // A directory that looks large (its size) starts the worker before the names are listed.
    const before = threads();
    const boom = () => {
      throw new Error('listing failed');
    };
    await expect(collect(boom, 2, 1)).rejects.toThrow('listing failed');
    await threadsBackTo(before);
  });
});
