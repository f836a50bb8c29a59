/**
 * Scans in the file store. Bounded (crash-path defect 13, scaling goal): a cursor inside a long held run is
 * carried past it with one read of the lease directory, not one lstat per held address. And gc scans without
 * the pool lock, so allocations never wait for a scan of every lease.
 */
import * as fs from 'node:fs';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { formatMac, parsePool } from '../../src/core/mac.js';
import { FileStore } from '../../src/store/file-store.js';

const lstats = vi.hoisted(() => ({ n: 0 }));
vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof fs>();
  return {
    ...real,
    lstatSync: (...args: Parameters<typeof real.lstatSync>) => {
      lstats.n += 1;
      return real.lstatSync(...args);
    },
  };
});

const dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-scan-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('file store: a long held run', () => {
  it('a cursor inside 20,000 held addresses in a row gets the first free one after them, in O(1) lstats', async () => {
    const pool = parsePool('42:00:00');
    const state = join(dir, 'state');
    const store = new FileStore({ dir: state, isAlive: () => true });
    expect((await store.allocate(pool, [{ vm: null, nic: null, owners: [] }]))[0]!.mac).toBe('42:00:00:00:00:01');
    // Held 42:00:00:00:00:02 .. 2 + 20,000, written as the store writes them; the cursor points at 2.
    const run = 20_000;
    for (let i = 2; i < 2 + run; i++) {
      const mac = formatMac(pool.base + i);
      const lease = { version: 1, mac, vm: null, nic: null, host: 'h', owners: [], created: new Date(0).toISOString() };
      writeFileSync(join(state, 'leases', `${mac.replaceAll(':', '')}.json`), `${JSON.stringify(lease)}\n`, { mode: 0o600 });
    }
    lstats.n = 0;
    expect(await store.peek(pool, 2)).toEqual([formatMac(pool.base + 2 + run), formatMac(pool.base + 3 + run)]);
    const [got] = await store.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
    expect(got!.mac).toBe(formatMac(pool.base + 2 + run));
    expect(lstats.n).toBeLessThan(500);
    expect((await store.status(pool)).cursor).toBe(formatMac(pool.base + 3 + run));
  });
});

describe('file store: gc', () => {
  it('scans every lease without the pool lock, and frees the stale ones under it', async () => {
    const pool = parsePool('42:00:00');
    const state = join(dir, 'gc-state');
    const dead = { pid: 4_000_002, startTime: 1 };
    const lockSeen: boolean[] = [];
    const store = new FileStore({
      dir: state,
      isAlive: (o) => {
        lockSeen.push(existsSync(join(state, 'pool.lock')));
        return o.pid !== dead.pid;
      },
    });
    await store.allocate(pool, [
      { vm: { name: 'a' }, nic: 0, owners: [dead] },
      { vm: { name: 'b' }, nic: 0, owners: [{ pid: process.pid, startTime: 1 }] },
    ]);
    const freed = await store.gc();
    expect(freed.map((l) => l.vm?.name)).toEqual(['a']);
    // The scan asked about both leases with the lock free; only the re-check of the stale one held it.
    expect(lockSeen).toEqual([false, false, true]);
  });
});
