/**
 * The etcd store's host index (held-by/<host>/<mac>): written and deleted with its lease, on no etcd lease,
 * moved by setOwners, left behind by an expired lease (skipped by readers, deleted by gc), built by the first gc
 * of a store written before it, repaired by gc, and counted per host without reading the leases (when the held
 * count cannot answer and no index key is left behind).
 */
import { describe, expect, it } from 'vitest';
import { parsePool } from '../../src/core/mac.js';
import type { Owner } from '../../src/core/owner.js';
import { parseStore, type EtcdTarget } from '../../src/core/store-url.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import { useEtcd } from '../helpers/etcd.js';

const pool = parsePool('42:00:00');
const DEAD: Owner = { pid: 4_000_003, startTime: 1 };
const isAlive = (o: Owner) => o.pid !== DEAD.pid;
const vm = (n: string) => ({ uuid: `00000000-0000-4000-8000-${n.padStart(12, '0')}`, name: n });

const e = useEtcd();

let n = 0;
/** Two stores on one fresh prefix, hosts h-one and h-two, closed after `fn`. */
async function withStores(fn: (s: { p: string; a: EtcdStore; b: EtcdStore }) => Promise<void>): Promise<void> {
  n += 1;
  const target = parseStore(e.server.url(`index-${n}`)) as EtcdTarget;
  const s = { p: `/index-${n}`, a: new EtcdStore({ target, host: 'h-one', isAlive }), b: new EtcdStore({ target, host: 'h-two', isAlive }) };
  try {
    await fn(s);
  } finally {
    await s.a.close();
    await s.b.close();
  }
}
const keys = async (prefix: string) => (await e.raw.getAll().prefix(prefix).keys()).sort();

describe('etcd host index', () => {
  it('each lease has its index key under its host, on no etcd lease; release deletes both', async () => {
    await withStores(async ({ p, a, b }) => {
      const [manual] = await a.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
      const [running] = await a.allocate(pool, [{ vm: vm('1'), nic: 0, owners: [{ pid: process.pid, startTime: 1 }] }]);
      await b.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
      expect(await keys(`${p}/held-by/`)).toEqual([`${p}/held-by/h-one/420000000001`, `${p}/held-by/h-one/420000000002`, `${p}/held-by/h-two/420000000003`]);
      const leaseOf = async (k: string) => String((await e.raw.get(k).exec()).kvs[0]!.lease);
      expect(await leaseOf(`${p}/macs/420000000002`)).not.toBe('0');
      expect(await leaseOf(`${p}/held-by/h-one/420000000002`)).toBe('0');
      expect(await leaseOf(`${p}/held-by/h-one/420000000001`)).toBe('0');
      expect(await a.release(manual!.mac)).toBe(true);
      expect(await a.release(running!.mac)).toBe(true);
      expect(await keys(`${p}/held-by/`)).toEqual([`${p}/held-by/h-two/420000000003`]);
    });
  });

  it('setOwners moves the index key to the host that now runs the VM', async () => {
    await withStores(async ({ p, a, b }) => {
      const [l] = await a.allocate(pool, [{ vm: vm('2'), nic: 0, owners: [] }]);
      await b.setOwners([l!.mac], [{ pid: process.pid, startTime: 1 }]);
      expect(await keys(`${p}/held-by/`)).toEqual([`${p}/held-by/h-two/420000000001`]);
      expect((await b.listHost()).leases.map((x) => x.mac)).toEqual([l!.mac]);
      expect((await a.listHost()).leases).toEqual([]);
    });
  });

  it('a store written before the index: readers read every lease, the first gc builds it, then counts come from it', async () => {
    await withStores(async ({ p, a }) => {
      // Lease keys as an earlier uncloud-vm wrote them: no index keys, no marker.
      const lease = (mac: string, host: string, owners: Owner[]) => JSON.stringify({ version: 1, mac, vm: vm(mac.slice(-2)), nic: 0, host, owners, created: new Date(0).toISOString() });
      await e.raw.put(`${p}/macs/420000000010`).value(lease('42:00:00:00:00:10', 'h-one', [DEAD]));
      await e.raw.put(`${p}/macs/420000000011`).value(lease('42:00:00:00:00:11', 'h-one', []));
      await e.raw.put(`${p}/macs/420000000012`).value(lease('42:00:00:00:00:12', 'h-two', []));
      await e.raw.put(`${p}/macs/420000000013`).value('garbage');
      expect((await a.listHost()).leases.map((l) => l.mac)).toEqual(['42:00:00:00:00:10', '42:00:00:00:00:11']);
      expect(await keys(`${p}/held-by`)).toEqual([]);
      expect((await a.status(pool)).byHost).toEqual({ 'h-one': 2, 'h-two': 1, 'damaged records': 1 });
      expect((await a.gc()).map((l) => l.mac)).toEqual(['42:00:00:00:00:10']);
      expect(await keys(`${p}/held-by`)).toEqual([`${p}/held-by-index`, `${p}/held-by/h-one/420000000011`, `${p}/held-by/h-one/420000000013`, `${p}/held-by/h-two/420000000012`]);
      const here = await a.listHost();
      expect(here.leases.map((l) => l.mac)).toEqual(['42:00:00:00:00:11']);
      expect(here.damaged.map((d) => d.key)).toEqual([`${p}/macs/420000000013`]);
      expect(await a.status(pool)).toMatchObject({ held: 3, byHost: { 'h-one': 1, 'h-two': 1, 'damaged records': 1 } }); // from the count, which gc made too
    });
  });

  it('an expired etcd lease leaves its index keys: list skips them, mac pool does not count them, gc deletes them', async () => {
    await withStores(async ({ p, a, b }) => {
      await a.gc(); // the index is whole from here on
      const agent = await a.takeLease();
      const run = (n: string) => ({ vm: vm(n), nic: 0, owners: [{ pid: process.pid, startTime: 1 }] });
      await a.allocate(pool, [run('1'), run('2'), { vm: null, nic: null, owners: [] }]);
      await b.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
      await agent.lease.revoke(); // as if the host died: etcd drops its running VMs' keys, no transaction of ours
      expect(await keys(`${p}/macs/`)).toEqual([`${p}/macs/420000000003`, `${p}/macs/420000000004`]);
      expect(await keys(`${p}/held-by/h-one/`)).toHaveLength(3);
      expect((await a.listHost()).leases.map((l) => l.mac)).toEqual(['42:00:00:00:00:03']);
      // A 4-octet pool is not counted: per host from the index, which has keys left over, so from the leases.
      const four = parsePool('42:00:00:00');
      expect((await a.status(four)).byHost).toEqual({ 'h-one': 1, 'h-two': 1 });
      expect(await a.gc()).toEqual([]);
      expect(await keys(`${p}/held-by/`)).toEqual([`${p}/held-by/h-one/420000000003`, `${p}/held-by/h-two/420000000004`]);
      expect((await a.status(four)).byHost).toEqual({ 'h-one': 1, 'h-two': 1 });
    });
  });

  it('gc deletes index keys whose lease is gone or is another host\'s now', async () => {
    await withStores(async ({ p, a }) => {
      await a.allocate(pool, [{ vm: null, nic: null, owners: [] }, { vm: null, nic: null, owners: [] }]);
      await a.gc(); // the index is whole from here on
      await e.raw.delete().key(`${p}/macs/420000000001`);
      await e.raw.put(`${p}/macs/420000000002`).value(JSON.stringify({ version: 1, mac: '42:00:00:00:00:02', vm: null, nic: null, host: 'h-two', owners: [], created: new Date(0).toISOString() }));
      expect((await a.listHost()).leases).toEqual([]);
      expect(await a.gc()).toEqual([]);
      expect(await keys(`${p}/held-by/`)).toEqual([]);
    });
  });
});
