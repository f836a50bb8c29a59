/**
 * How the etcd store allocates, counted at etcd itself (its gRPC server metrics): one transaction per
 * allocation in one process, racing processes that spread out instead of all aiming at the next address, and
 * the pool's guarantees under a race (distinct addresses, exhaustion only when every address is held).
 */
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatMac, parsePool } from '../../src/core/mac.js';
import { parseStore, type EtcdTarget } from '../../src/core/store-url.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import { writeEtcdLeases } from '../../scripts/lib/lease-fixture.mjs';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';

const big = parsePool('42:00:00');
const tiny = parsePool('42:00:00:00:00'); // 256 addresses
const manual = { vm: null, nic: null, owners: [] };

let etcd: EtcdServer;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => etcd?.remove());

let n = 0;
const storeAt = (prefix: string, host = 'h1') => new EtcdStore({ target: parseStore(etcd.url(prefix)) as EtcdTarget, host });
const freshPrefix = () => `alloc-${process.pid}-${++n}`;

/** Successful KV calls etcd has served so far, by method (its gRPC server metrics). */
async function served(): Promise<{ Txn: number; Range: number }> {
  const text = await (await fetch(`http://${etcd.endpoint}/metrics`)).text();
  const count = (method: string) => Number(new RegExp(`grpc_server_handled_total\\{grpc_code="OK",grpc_method="${method}",grpc_service="etcdserverpb.KV"[^}]*\\} (\\d+)`).exec(text)?.[1] ?? NaN);
  return { Txn: count('Txn'), Range: count('Range') };
}

describe('etcd allocation', () => {
  it('64 allocations side by side in one process go together: a few claim transactions, and one read of the pool for all', async () => {
    const store = storeAt(freshPrefix());
    try {
      const before = await served();
      const leases = await Promise.all(Array.from({ length: 64 }, () => store.allocate(big, [manual])));
      const after = await served();
      const macs = leases.map((l) => l[0]!.mac).sort();
      expect(new Set(macs).size).toBe(64);
      // In order from the start of the pool: 42:00:00:00:00:01 … :40.
      expect(macs[0]).toBe('42:00:00:00:00:01');
      expect(macs[63]).toBe('42:00:00:00:00:40');
      // One read of a run of the pool (a transaction of reads) and one of the cursor; then the claims made in
      // one turn of the event loop go together, up to 56 addresses per transaction: 64 claims in 2.
      expect(after.Txn - before.Txn).toBe(1 + 2);
      expect(after.Range - before.Range).toBe(1);
      expect((await store.status(big)).held).toBe(64);
    } finally {
      await store.close();
    }
  });

  it('claims that go together each get their own answer: a MAC asked for by name that is held fails that allocation alone', async () => {
    const prefix = freshPrefix();
    const store = storeAt(prefix);
    const other = storeAt(prefix, 'h2');
    try {
      const [held] = await other.allocate(big, [{ ...manual, mac: '42:00:00:00:10:00' }]);
      const named = (i: number) => `42:00:00:00:20:${i.toString(16).padStart(2, '0')}`;
      const before = await served();
      // All 21 go in one transaction, which fails on the held one.
      const got = await Promise.allSettled([
        ...Array.from({ length: 10 }, (_, i) => store.allocate(big, [{ ...manual, mac: named(i) }])),
        store.allocate(big, [{ ...manual, mac: held!.mac }]),
        ...Array.from({ length: 10 }, (_, i) => store.allocate(big, [{ ...manual, mac: named(10 + i) }])),
      ]);
      const after = await served();
      const failed = got.filter((r) => r.status === 'rejected');
      expect(failed).toHaveLength(1);
      expect((failed[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'MAC_HELD', message: expect.stringMatching(/42:00:00:00:10:00 is already held by/) });
      expect(got.flatMap((r) => (r.status === 'fulfilled' ? [r.value[0]!.mac] : [])).sort()).toEqual(Array.from({ length: 20 }, (_, i) => named(i)));
      // The transaction that failed, and the other 20 again together.
      expect(after.Txn - before.Txn).toBe(2);
      expect((await store.status(big)).byHost).toEqual({ h1: 20, h2: 1 });
    } finally {
      await store.close();
      await other.close();
    }
  });

  it('two allocations side by side asking for one MAC by name: one gets it, the other is told it is held (never one transaction writing it twice)', async () => {
    const store = storeAt(freshPrefix());
    try {
      const mac = '42:00:00:00:30:00';
      const got = await Promise.allSettled([
        store.allocate(big, [{ ...manual, mac: '42:00:00:00:30:01' }]),
        store.allocate(big, [{ ...manual, mac: '42:00:00:00:30:02' }]),
        store.allocate(big, [{ ...manual, mac }]),
        store.allocate(big, [{ ...manual, mac }]),
      ]);
      expect(got.slice(0, 2).map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
      // The two for one MAC go in two transactions (side by side): whichever etcd takes first wins.
      const rejected = got.filter((r) => r.status === 'rejected');
      expect(rejected).toHaveLength(1);
      expect((rejected[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'MAC_HELD' });
      expect((await store.status(big)).held).toBe(3);
    } finally {
      await store.close();
    }
  });

  it('claims that go together stay under etcd\'s 128 operations when their counts fall in many counter groups', async () => {
    const wide = parsePool('42'); // a counter group per 3 octets: every MAC below in a group of its own
    const store = storeAt(freshPrefix());
    try {
      const macs = Array.from({ length: 64 }, (_, i) => `42:00:${i.toString(16).padStart(2, '0')}:00:00:01`);
      const got = await Promise.all(macs.map((mac) => store.allocate(wide, [{ ...manual, mac }])));
      expect(got.map((l) => l[0]!.mac)).toEqual(macs);
      expect((await store.status(wide)).held).toBe(64);
    } finally {
      await store.close();
    }
  });

  it('many allocators side by side in each of three stores, with releases and multi-NIC requests: no MAC twice, the count and the host index exact', async () => {
    const prefix = freshPrefix();
    const stores = [storeAt(prefix, 'h1'), storeAt(prefix, 'h1'), storeAt(prefix, 'h2')];
    const LIVE = { pid: process.pid, startTime: 1 };
    const held = new Map<string, string>(); // mac → host, as the allocations returned them
    const rnd = (k: number) => Math.floor(Math.random() * k);
    try {
      const worker = async (s: EtcdStore, w: number): Promise<void> => {
        const mine: string[] = [];
        for (let i = 0; i < 12; i++) {
          if (mine.length > 0 && rnd(4) === 0) {
            const mac = mine.splice(rnd(mine.length), 1)[0]!;
            expect(await s.release(mac)).toBe(true);
            held.delete(mac);
            continue;
          }
          const reqs = Array.from({ length: 1 + rnd(3) }, (_, j) =>
            rnd(2) ? manual : { vm: { uuid: `00000000-0000-4000-8000-${String(w * 1000 + i * 10 + j).padStart(12, '0')}`, name: `v${w}-${i}-${j}` }, nic: j, owners: [LIVE] },
          );
          for (const l of await s.allocate(big, reqs)) {
            expect(held.has(l.mac)).toBe(false); // never handed out while held
            held.set(l.mac, s.host);
            mine.push(l.mac);
          }
        }
      };
      await Promise.all(stores.flatMap((s, k) => Array.from({ length: 40 }, (_, w) => worker(s, k * 100 + w))));
      const keys = await stores[0]!.list();
      expect(keys.leases.map((l) => l.mac).sort()).toEqual([...held.keys()].sort());
      const byHost: Record<string, number> = {};
      for (const host of held.values()) byHost[host] = (byHost[host] ?? 0) + 1;
      const st = await stores[2]!.status(big);
      expect(st.held).toBe(held.size);
      expect(st.byHost).toEqual(byHost);
      // Each host's index names exactly its leases.
      for (const s of [stores[0]!, stores[2]!]) {
        expect((await s.listHost()).leases.map((l) => l.mac).sort()).toEqual([...held].filter(([, h]) => h === s.host).map(([m]) => m).sort());
      }
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  }, 60_000);

  it('a view read a moment too early: the next attempt takes the next free address after the one lost, in order', async () => {
    const prefix = freshPrefix();
    const a = storeAt(prefix);
    const b = storeAt(prefix);
    try {
      expect((await a.allocate(big, [manual]))[0]!.mac).toBe('42:00:00:00:00:01');
      // b starts at the shared cursor and takes 2..11 while a still believes them free.
      for (let i = 0; i < 10; i++) await b.allocate(big, [manual]);
      const before = await served();
      expect((await a.allocate(big, [manual]))[0]!.mac).toBe('42:00:00:00:00:0c');
      const after = await served();
      // The lost claim read what the next attempt needed in its own failing transaction: two in all.
      expect(after.Txn - before.Txn).toBe(2);
      expect(after.Range - before.Range).toBe(0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('stores racing for one pool hand out distinct addresses, with few lost races', async () => {
    const prefix = freshPrefix();
    const stores = Array.from({ length: 8 }, (_, i) => storeAt(prefix, `h${i}`));
    try {
      const before = await served();
      const per = 40;
      const got = await Promise.all(
        stores.map(async (s) => {
          const out: string[] = [];
          for (let i = 0; i < per; i++) out.push((await s.allocate(big, [manual]))[0]!.mac);
          return out;
        }),
      );
      const after = await served();
      const all = got.flat();
      expect(new Set(all).size).toBe(stores.length * per);
      // Racers spread out: the transactions (claims, lost claims, reads of runs) stay well under two per allocation.
      expect(after.Txn - before.Txn).toBeLessThan(1.5 * stores.length * per);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('stores racing to exhaust a small pool: every address handed out once, and exhausted only when all are held', async () => {
    const prefix = freshPrefix();
    const stores = Array.from({ length: 4 }, (_, i) => storeAt(prefix, `h${i}`));
    try {
      const got = await Promise.all(
        stores.map(async (s) => {
          const out: string[] = [];
          for (;;) {
            try {
              out.push((await s.allocate(tiny, [manual]))[0]!.mac);
            } catch (err) {
              expect((err as { code?: string }).code).toBe('POOL_EXHAUSTED');
              return out;
            }
          }
        }),
      );
      const all = got.flat();
      expect(all).toHaveLength(256);
      expect(new Set(all).size).toBe(256);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });

  it('an exhausted pool whose only free address was freed behind every view: found, not reported exhausted', async () => {
    const prefix = freshPrefix();
    const a = storeAt(prefix);
    const b = storeAt(prefix);
    try {
      for (let i = 0; i < 255; i++) await a.allocate(tiny, [manual]);
      const [last] = await b.allocate(tiny, [manual]);
      await expect(a.allocate(tiny, [manual])).rejects.toThrow(/exhausted/);
      // b frees an address that a's (and b's) latest reads saw held.
      expect(await b.release('42:00:00:00:00:80')).toBe(true);
      expect((await a.allocate(tiny, [manual]))[0]!.mac).toBe('42:00:00:00:00:80');
      expect(last!.mac).not.toBe('42:00:00:00:00:80');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a MAC asked for by name under a conflict record is refused at once, naming the conflict', async () => {
    const store = storeAt(freshPrefix());
    try {
      const holder = (await store.allocate(big, [manual]))[0]!;
      await store.release(holder.mac);
      await store.setConflict(holder.mac, { version: 1, mac: holder.mac, host: 'h9', vm: { name: 'web' }, holder, detected: new Date(0).toISOString() });
      const before = await served();
      await expect(store.allocate(big, [{ ...manual, mac: holder.mac }])).rejects.toMatchObject({ code: 'MAC_HELD', message: expect.stringMatching(/under a conflict record/) });
      expect((await served()).Txn - before.Txn).toBeLessThanOrEqual(2);
    } finally {
      await store.close();
    }
  });

  it('a preferred MAC another holds (or under a conflict record) falls back to the next free one', async () => {
    const prefix = freshPrefix();
    const store = storeAt(prefix);
    const other = storeAt(prefix, 'h2');
    try {
      const [held] = await other.allocate(big, [manual]); // :01
      const [got] = await store.allocate(big, [{ ...manual, prefer: held!.mac }]);
      expect(got!.mac).toBe('42:00:00:00:00:02');
      await store.setConflict('42:00:00:00:00:07', { version: 1, mac: '42:00:00:00:00:07', host: 'h9', vm: { name: 'web' }, holder: null, detected: new Date(0).toISOString() });
      const [next] = await store.allocate(big, [{ ...manual, prefer: '42:00:00:00:00:07' }]);
      expect(next!.mac).toBe('42:00:00:00:00:03');
    } finally {
      await store.close();
      await other.close();
    }
  });

  it('an address under a conflict recorded after this process read the pool is passed over, in order', async () => {
    const store = storeAt(freshPrefix());
    try {
      await store.allocate(big, [manual]); // :01, and :02… read as free
      await store.setConflict('42:00:00:00:00:02', { version: 1, mac: '42:00:00:00:00:02', host: 'h9', vm: { name: 'web' }, holder: null, detected: new Date(0).toISOString() });
      expect((await store.allocate(big, [manual]))[0]!.mac).toBe('42:00:00:00:00:03');
      expect((await store.allocate(big, [manual]))[0]!.mac).toBe('42:00:00:00:00:04');
    } finally {
      await store.close();
    }
  });

  it('keys written by hand behind the store (another client) are never handed out twice', async () => {
    const prefix = freshPrefix();
    const store = storeAt(prefix);
    const raw = new Etcd3({ hosts: etcd.endpoint });
    try {
      await store.allocate(big, [manual]);
      for (const hex of ['420000000002', '420000000003', '420000000005']) await raw.put(`/${prefix}/macs/${hex}`).value('{}');
      const got = [];
      for (let i = 0; i < 3; i++) got.push((await store.allocate(big, [manual]))[0]!.mac);
      expect(got).toEqual(['42:00:00:00:00:04', '42:00:00:00:00:06', '42:00:00:00:00:07']);
    } finally {
      raw.close();
      await store.close();
    }
  });

  it('a long held stretch from the cursor is skipped in a few reads, not one per 256 addresses', async () => {
    const prefix = freshPrefix();
    await writeEtcdLeases(etcd.endpoint, `/${prefix}`, 50_000, { base: big.base, first: 1 });
    const store = storeAt(prefix);
    try {
      const firstFree = formatMac(big.base + 50_001);
      const before = await served();
      expect(await store.peek(big, 1)).toEqual([firstFree]);
      expect((await store.allocate(big, [manual]))[0]!.mac).toBe(firstFree);
      const after = await served();
      // One read per run of 256 would be ~200 for each; counts over doubling, then halving spans need ~20.
      expect(after.Txn + after.Range - before.Txn - before.Range).toBeLessThan(60);
    } finally {
      await store.close();
    }
  }, 60_000);
});
