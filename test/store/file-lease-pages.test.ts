/** Lease files read a page at a time: in this thread and through the read-ahead worker, with the same result. */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FileText, printJson, type ReadOptions, readPages, type TextPage } from '../../src/store/file-lease-pages.js';

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
  for await (const page of readPages(dir, list, size, { readAheadFrom })) {
    pages.push(page);
    if (pause) await sleep(pause);
  }
  return pages;
}

/** `count` files n.json holding their name; their names in order. */
function files(count: number): string[] {
  const names = Array.from({ length: count }, (_, i) => `${String(i).padStart(3, '0')}.json`);
  for (const n of names) writeFileSync(join(dir, n), JSON.stringify({ n }));
  return names;
}

/** Every page of a listing through the worker; `atPage(i, worker)` runs once page i is taken. */
async function throughWorker(names: string[], size: number, opts: ReadOptions, atPage: (i: number, worker: Worker) => Promise<void> | void) {
  let worker: Worker | undefined;
  const pages: TextPage[] = [];
  for await (const page of readPages(dir, () => names, size, { ...opts, readAheadFrom: 1, onWorker: (w) => (worker = w) })) {
    pages.push(page);
    await atPage(pages.length, worker!);
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
    for await (const page of readPages(dir, () => names, 2, { readAheadFrom: 1 })) {
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

  it('a worker that dies mid-listing: the pages it had not given are read here, every file once and in order', async () => {
    const names = files(40);
    const before = threads();
    const pages = await throughWorker(names, 3, {}, async (i, worker) => {
      if (i === 1) await worker.terminate();
    });
    expect(pages.flatMap((p) => p.names)).toEqual(names);
    expect(pages.flatMap((p) => p.texts)).toEqual(names.map((n) => JSON.stringify({ n })));
    await threadsBackTo(before);
  });

  it('a worker that fails before its first page (an error thrown in it): every page is read here', async () => {
    const names = files(10);
    const before = threads();
    let worker: Worker | undefined;
    const errors: Error[] = [];
    const onWorker = (w: Worker) => {
      worker = w;
      w.on('error', (err) => errors.push(err));
      w.postMessage({}); // taken for the names: the worker throws on it (it has no list) and ends
    };
    const pages: TextPage[] = [];
    for await (const page of readPages(dir, () => names, 3, { readAheadFrom: 1, onWorker })) pages.push(page);
    expect(worker).toBeDefined();
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/split/)]);
    expect(pages.flatMap((p) => p.names)).toEqual(names);
    expect(pages.flatMap((p) => p.texts)).toEqual(names.map((n) => JSON.stringify({ n })));
    await threadsBackTo(before);
  });

  it('json: every page comes printed as printJson prints its texts, read here or by the worker', async () => {
    const names = files(30);
    writeFileSync(join(dir, names[7]!), 'not json');
    mkdirSync(join(dir, 'dir.json'));
    const all = [...names, 'dir.json', 'gone.json'];
    for (const readAheadFrom of [1, 100]) {
      const pages: TextPage[] = [];
      for await (const page of readPages(dir, () => all, 2, { json: true, readAheadFrom })) pages.push(page);
      expect(pages.flatMap((p) => p.names)).toEqual(all);
      for (const p of pages) expect(p.json).toEqual(p.texts.map(printJson));
      expect(pages[3]!.json).toEqual([`  {\n    "n": "${names[6]}"\n  }`, null]); // not JSON: null
      expect(pages.at(-1)!.json).toEqual([null, null]); // a directory, a file gone: nothing to print
    }
  });

  // Leases as serializeLease writes them (printed by position), and texts one step off that form (printed by JSON).
  const lease = { version: 1, mac: '42:00:00:00:00:07', vm: { uuid: '00000000-0000-4000-8000-000000000007', name: 'web 1' }, nic: 0, host: 'h', owners: [{ pid: 42, startTime: 123456789012345 }], created: '1970-01-01T00:00:00.000Z' };
  const written: [string, object][] = [
    ['as written', lease],
    ['no vm, no nic, no owners (mac allocate)', { ...lease, vm: null, nic: null, owners: [] }],
    ['a vm with a name alone', { ...lease, vm: { name: 'r1' } }],
    ['two owners', { ...lease, owners: [{ pid: 1, startTime: 0 }, { pid: 2, startTime: 3 }] }],
    ['non-ASCII text and U+2028 (JSON prints them as they are)', { ...lease, host: 'hôte\u2028\u007f', vm: { name: 'ü' } }],
  ];
  it.each(written)('printJson of a lease as written: %s, printed by position as JSON.stringify prints it', (_, value) => {
    const text = `${JSON.stringify(value)}\n`;
    const parse = JSON.parse;
    // JSON.parse unusable: a text in the written form must not need it.
    JSON.parse = () => {
      throw new Error('JSON.parse called');
    };
    try {
      expect(printJson(text)).toBe(JSON.stringify([value], null, 2).slice(2, -2));
      expect(printJson(text.trimEnd())).toBe(JSON.stringify([value], null, 2).slice(2, -2));
    } finally {
      JSON.parse = parse;
    }
  });

  const w = JSON.stringify(lease);
  it.each([
    ['an escape in a string', w.replace('web 1', 'web\\"1')],
    ['an escaped letter', w.replace('web 1', 'web\\u00411')],
    ['a control character escaped', w.replace('web 1', 'web\\n1')],
    ['a lone surrogate escaped', w.replace('web 1', 'web\\ud8001')],
    ['a space after a colon', w.replace('"nic":0', '"nic": 0')],
    ['spaces after the record', `${w}  \n`],
    ['keys in another order', w.replace('{"pid":42,"startTime":123456789012345}', '{"startTime":123456789012345,"pid":42}')],
    ['another key', w.replace('"nic":0', '"nic":0,"x":[1,{}]')],
    ['a fraction', w.replace('"nic":0', '"nic":1.50')],
    ['an exponent', w.replace('"pid":42', '"pid":42e1')],
    ['Infinity by exponent', w.replace('"pid":42', '"pid":1e400')],
    ['a minus', w.replace('"pid":42', '"pid":-0')],
    ['a surrogate pair (an emoji)', w.replace('web 1', 'web 🙂')],
    ['a lone surrogate as it stands', w.replace('web 1', 'web\ud8001')],
    ['a lone low surrogate as it stands', w.replace('web 1', 'web\udc001')],
    ['16 digits', w.replace('123456789012345', '1234567890123456789')],
    ['a uuid that is no string', w.replace('"00000000-0000-4000-8000-000000000007"', '7')],
    ['nic as a string', w.replace('"nic":0', '"nic":"0"')],
  ])('printJson of a lease off the written form (%s): as JSON.parse and JSON.stringify print it', (_, text) => {
    expect(printJson(text)).toBe(JSON.stringify([JSON.parse(text)], null, 2).slice(2, -2));
  });

  it.each([
    ['a leading zero', w.replace('"pid":42', '"pid":042')],
    ['a control character as it stands', w.replace('web 1', 'web\n1')],
    ['cut short', w.slice(0, -1)],
    ['cut inside a string', w.slice(0, w.indexOf('web') + 2)],
    ['something after the record', `${w}\nx`],
  ])('printJson of a text that is not JSON (%s): null, as before', (_, text) => {
    expect(() => JSON.parse(text)).toThrow();
    expect(printJson(text)).toBeNull();
  });

  it('printJson: a text as JSON.stringify prints it inside an array indented by two; null when it is not JSON', () => {
    const value = { version: 1, vm: { name: 'a"b\u2028' }, owners: [{ pid: 1, startTime: 2 }], e: [], o: {} };
    expect(printJson(JSON.stringify(value))).toBe(JSON.stringify([value], null, 2).slice(2, -2));
    expect(printJson('{"big":1e400}')).toBe('  {\n    "big": null\n  }'); // parsed as Infinity, printed as JSON prints it
    expect(`[\n${printJson('{"a":[1,{"b":null}]}')}\n]`).toBe(JSON.stringify([{ a: [1, { b: null }] }], null, 2));
    expect([printJson('{'), printJson(''), printJson(null), printJson({ error: 'EIO' })]).toEqual([null, null, null, null]);
  });
});
