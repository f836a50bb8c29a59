/**
 * The file store's count (pool.json) and host index (hosts/<host>/) in the states a kill or a power loss can
 * leave: each state is made by hand as the store's steps leave it, and the store must read it right and one gc
 * (or the next change) must converge it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parsePool } from '../../src/core/mac.js';
import type { Owner } from '../../src/core/owner.js';
import { FileStore } from '../../src/store/file-store.js';

const pool = parsePool('42:00:00');
const HOST = 'h-index';
const DEAD: Owner = { pid: 4_000_002, startTime: 1 };
const isAlive = (o: Owner) => o.pid !== DEAD.pid;
const hex = (mac: string) => mac.replaceAll(':', '');

let dir: string;
let state: string;
let store: FileStore;
const poolFile = () => JSON.parse(readFileSync(join(state, 'pool.json'), 'utf8'));
const leaseFile = (mac: string) => join(state, 'leases', `${hex(mac)}.json`);
const entry = (mac: string, host = HOST) => join(state, 'hosts', host, hex(mac));
const leaseText = (mac: string, owners: Owner[] = [DEAD]) =>
  `${JSON.stringify({ version: 1, mac, vm: { uuid: `00000000-0000-4000-8000-${hex(mac)}`, name: `v${hex(mac)}` }, nic: 0, host: HOST, owners, created: new Date(0).toISOString() })}\n`;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sfile-index-'));
  state = join(dir, 'state');
  store = new FileStore({ dir: state, host: HOST, isAlive });
  await store.allocate(pool, [{ vm: null, nic: null, owners: [] }, { vm: null, nic: null, owners: [] }]);
  await store.gc(); // the index and count are checked once per boot: this one is done
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('file store count', () => {
  it('is kept in pool.json, and status does not read the lease directory for it', async () => {
    await store.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
    expect(poolFile().held).toEqual({ '420000': 2 }); // written before the lease file, which is pending
    expect(poolFile().pending).toEqual(['42:00:00:00:00:03']);
    expect((await store.status(pool)).held).toBe(3);
  });

  it('a kill after pool.json names a MAC pending, before its lease file: counted only once the file is there', async () => {
    const mac = '42:00:00:00:00:09';
    writeFileSync(join(state, 'pool.json'), JSON.stringify({ ...poolFile(), held: { '420000': 2 }, pending: [mac] }));
    expect((await store.status(pool)).held).toBe(2);
    writeFileSync(entry(mac), '');
    writeFileSync(leaseFile(mac), leaseText(mac, []));
    expect((await store.status(pool)).held).toBe(3);
    // The next change folds it in.
    await store.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
    expect(poolFile().held).toEqual({ '420000': 3 });
    expect((await store.status(pool)).held).toBe(4);
  });

  it('a kill after pool.json names a MAC pending for removal, before its file is gone: counted until it is', async () => {
    const mac = '42:00:00:00:00:01';
    writeFileSync(join(state, 'pool.json'), JSON.stringify({ ...poolFile(), held: { '420000': 1 }, pending: [mac] }));
    expect((await store.status(pool)).held).toBe(2);
    unlinkSync(leaseFile(mac));
    expect((await store.status(pool)).held).toBe(1);
    expect(await store.release('42:00:00:00:00:02')).toBe(true);
    expect((await store.status(pool)).held).toBe(0);
    // Recorded without the MAC being removed, which stays pending: 0 either way.
    expect(poolFile()).toMatchObject({ held: { '420000': 0 }, pending: ['42:00:00:00:00:02'] });
  });

  it('a prefix not counted yet (a pool file of an earlier version) is read from the directory until the next change counts it', async () => {
    writeFileSync(join(state, 'pool.json'), JSON.stringify({ version: 1, cursors: poolFile().cursors }));
    expect((await store.status(pool)).held).toBe(2);
    expect(poolFile().held).toBeUndefined(); // status writes nothing
    await store.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
    expect(poolFile().held).toEqual({ '420000': 2 });
    expect((await store.status(pool)).held).toBe(3);
    expect((await store.status(parsePool('42:00:01'))).held).toBe(0);
  });

  it('a wrong count (a live holder whose lock was broken as stale) is counted again by a whole read', async () => {
    writeFileSync(join(state, 'pool.json'), JSON.stringify({ ...poolFile(), held: { '420000': 7 }, pending: [] }));
    expect((await store.status(pool)).held).toBe(7);
    expect((await store.list()).leases).toHaveLength(2);
    expect((await store.status(pool)).held).toBe(2);
  });

  it('a damaged count is a clear error for allocation and status, and does not stop a release', async () => {
    writeFileSync(join(state, 'pool.json'), JSON.stringify({ ...poolFile(), held: { '420000': -1 } }));
    await expect(store.status(pool)).rejects.toThrow(/pool\.json is damaged \(bad held counts\)/);
    await expect(store.allocate(pool, [{ vm: null, nic: null, owners: [] }])).rejects.toThrow(/bad held counts/);
    expect(await store.release('42:00:00:00:00:01')).toBe(true);
  });
});

describe('file store host index', () => {
  it('an entry is written for every lease of this host, and removed with it', async () => {
    expect(existsSync(entry('42:00:00:00:00:01'))).toBe(true);
    await store.release('42:00:00:00:00:01');
    expect(existsSync(entry('42:00:00:00:00:01'))).toBe(false);
  });

  it('a kill after the entry, before the lease file: the entry is skipped, and gc removes it', async () => {
    const mac = '42:00:00:00:00:30';
    writeFileSync(entry(mac), '');
    expect((await store.listHost()).leases.map((l) => l.mac)).toEqual(['42:00:00:00:00:01', '42:00:00:00:00:02']);
    expect(await store.gc()).toEqual([]);
    expect(existsSync(entry(mac))).toBe(false);
  });

  it('a lease without an entry (written before the index, or its entry lost in a power loss) is found after the check of this boot', async () => {
    const mac = '42:00:00:00:00:40';
    await store.listHost();
    writeFileSync(leaseFile(mac), leaseText(mac));
    // The index was checked in this boot: the lease is not in it (this is why the check runs once per boot).
    expect((await store.listHost()).leases).toHaveLength(2);
    // Checked in an earlier boot (a power loss may have lost the entry): the first gc checks it again.
    writeFileSync(join(state, 'hosts', '.complete'), 'an earlier boot\n');
    expect((await store.gc()).map((l) => l.mac)).toEqual([mac]);
    expect(existsSync(leaseFile(mac))).toBe(false);
    // The count was checked too.
    expect((await store.status(pool)).held).toBe(2);
  });

  it.each([
    { what: 'empty', lose: () => writeFileSync(join(state, 'hosts', '.complete'), '') },
    { what: 'gone', lose: () => unlinkSync(join(state, 'hosts', '.complete')) },
  ])('a marker a power loss left $what (it is not fsynced), an entry lost with it: as after any power loss, the first gc puts the entry back', async ({ lose }) => {
    const mac = '42:00:00:00:00:41';
    writeFileSync(leaseFile(mac), leaseText(mac, [{ pid: process.pid, startTime: 1 }]));
    lose();
    expect(await store.gc()).toEqual([]);
    expect((await store.listHost()).leases.map((l) => l.mac)).toContain(mac);
    expect(existsSync(entry(mac))).toBe(true);
    expect((await store.status(pool)).held).toBe(3);
  });

  it('a store from before the index: the first reader builds it, every host under its own name', async () => {
    rmSync(join(state, 'hosts'), { recursive: true });
    const theirs = '42:00:00:00:00:50';
    writeFileSync(leaseFile(theirs), leaseText(theirs).replace(`"host":"${HOST}"`, '"host":"h-else"'));
    // Until then readers read every lease file, and write nothing.
    expect((await store.listHost()).leases.map((l) => l.mac)).toEqual(['42:00:00:00:00:01', '42:00:00:00:00:02']);
    expect(existsSync(join(state, 'hosts'))).toBe(false);
    expect(await store.gc()).toEqual([]);
    expect(existsSync(entry('42:00:00:00:00:01'))).toBe(true);
    expect(existsSync(entry(theirs, 'h-else'))).toBe(true);
    expect((await store.listHost()).leases).toHaveLength(2);
  });

  it('gc sweeps temp files that killed writers left, once they are old', async () => {
    const old = join(state, 'tmp', '.tmp-420000000099.json-1-1');
    const young = join(state, 'tmp', '.tmp-420000000098.json-1-2');
    writeFileSync(old, 'x');
    writeFileSync(young, 'x');
    utimesSync(old, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    await store.gc();
    expect(existsSync(old)).toBe(false);
    expect(existsSync(young)).toBe(true);
  });

  it('gc sweeps at once a temp file whose writer is gone, and the pool file\'s and a rewritten lease\'s temp files are made there', async () => {
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!; // a pid that has exited
    const left = join(state, 'tmp', `.tmp-pool.json-${gone}-1`);
    writeFileSync(left, '{');
    await store.gc();
    expect(existsSync(left)).toBe(false);
    // Writes of the pool file and of a lease's owners go through the store's tmp dir (only it is swept).
    rmSync(join(state, 'tmp'), { recursive: true });
    writeFileSync(join(state, 'tmp'), '');
    await expect(store.setOwners(['42:00:00:00:00:01'], [])).rejects.toThrow(/cannot write/);
    await expect(store.release('42:00:00:00:00:02')).rejects.toThrow(/cannot write/);
    rmSync(join(state, 'tmp'));
    expect((await store.listHost()).leases.map((l) => l.mac)).toEqual(['42:00:00:00:00:01', '42:00:00:00:00:02']);
  });
});
