/**
 * Every store verb at 200,000 held leases, on both stores: the leases are written straight into the store by
 * a fixture (scripts/lib/lease-fixture.mjs), as the store writes them, held in one run from the cursor on.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatMac, parsePool } from '../../src/core/mac.js';
import type { Owner } from '../../src/core/owner.js';
import { parseStore, type EtcdTarget } from '../../src/core/store-url.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import { FileStore } from '../../src/store/file-store.js';
import type { Store } from '../../src/store/store.js';
import { writeEtcdLeases, writeFileLeases } from '../../scripts/lib/lease-fixture.mjs';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';

const N = 200_000;
const DEAD = 1_000;
const DEAD_PID = 4_000_001;
const HOST = 'h-scale';
const pool = parsePool('42:00:00');
// Leases 42:00:00:00:00:01 .. N, the last DEAD of them owned by a process that is gone; the cursor is at 1.
const fixture = {
  base: pool.base,
  prefix: pool.prefix,
  first: 1,
  host: HOST,
  owners: (i: number): Owner[] => (i >= N - DEAD ? [{ pid: DEAD_PID, startTime: 1 }] : []),
};
const isAlive = (o: Owner) => o.pid !== DEAD_PID;
const firstFree = formatMac(pool.base + 1 + N);

function verbs(name: string, make: () => Promise<Store>) {
  describe(`${name} at ${N.toLocaleString('en-US')} leases`, () => {
    let store: Store;
    beforeAll(async () => {
      store = await make();
    }, 300_000);
    afterAll(async () => store?.close(), 60_000);

    it('status counts them all', async () => {
      expect((await store.status(pool)).held).toBe(N);
    });

    it('list reads them all, in order, none damaged', async () => {
      const { leases, damaged } = await store.list();
      expect(leases).toHaveLength(N);
      expect(damaged).toEqual([]);
      expect(leases[0]!.mac).toBe('42:00:00:00:00:01');
      expect(leases[N - 1]!.mac).toBe(formatMac(pool.base + N));
    });

    it('the host listing reads them all through the host index', async () => {
      const { leases, damaged } = await store.listHost();
      expect(leases).toHaveLength(N);
      expect(damaged).toEqual([]);
    });

    it('pages stream them all in order', async () => {
      let n = 0;
      let last = '';
      for await (const page of store.leasePages()) {
        for (const l of page.leases) {
          expect(l.mac > last).toBe(true);
          last = l.mac;
        }
        n += page.leases.length;
      }
      expect(n).toBe(N);
    });

    it('get finds one', async () => {
      expect((await store.get('42:00:00:00:10:00'))?.mac).toBe('42:00:00:00:10:00');
    });

    it('peek and allocate skip the held run from the cursor and agree', async () => {
      expect(await store.peek(pool, 1)).toEqual([firstFree]);
      const [lease] = await store.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
      expect(lease!.mac).toBe(firstFree);
    });

    it('setOwners and release work on one of them', async () => {
      await store.setOwners(['42:00:00:00:00:07'], [{ pid: process.pid, startTime: 1 }]);
      expect((await store.get('42:00:00:00:00:07'))?.owners).toEqual([{ pid: process.pid, startTime: 1 }]);
      expect(await store.release('42:00:00:00:00:07')).toBe(true);
      expect(await store.get('42:00:00:00:00:07')).toBeNull();
    });

    it('gc frees exactly the leases of dead owners', async () => {
      const freed = await store.gc();
      expect(freed).toHaveLength(DEAD);
      expect((await store.status(pool)).held).toBe(N - DEAD); // + the allocation - the release
      expect((await store.listHost()).leases).toHaveLength(N - DEAD);
    });
  });
}

const dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-scale-'));
let etcd: EtcdServer | undefined;
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await etcd?.remove();
}, 300_000);

verbs('file store', async () => {
  writeFileLeases(join(dir, 'state'), N, fixture);
  return new FileStore({ dir: join(dir, 'state'), host: HOST, isAlive });
});

verbs('etcd store', async () => {
  etcd = await startEtcd();
  await writeEtcdLeases(etcd.endpoint, '/scale', N, fixture);
  return new EtcdStore({ target: parseStore(etcd.url('scale')) as EtcdTarget, host: HOST, isAlive });
});
