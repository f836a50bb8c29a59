/**
 * The store contract: one suite every MAC pool backend must pass (file store, etcd store).
 * `make` builds a fresh, empty store; `alive` decides which owners count as running.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parsePool } from '../../src/core/mac.js';
import type { Owner, Store } from '../../src/store/store.js';

export interface StoreFactory {
  make: (opts: { isAlive: (o: Owner) => boolean; host?: string }) => Promise<Store>;
  /** Overwrite the record of one MAC with these bytes, as a disk error or a foreign writer would. */
  corrupt: (mac: string, text: string) => Promise<void>;
  /** The same for a named VM's identity record. */
  corruptIdentity: (name: string, text: string) => Promise<void>;
  cleanup: () => Promise<void>;
}

const tiny = parsePool('42:00:00:00:00'); // 256 addresses
const big = parsePool('42:00:00');
const vm = (name: string) => ({ uuid: `00000000-0000-4000-8000-${name.padStart(12, '0')}`, name });
const manual = { vm: null, nic: null, owners: [] as Owner[] };

export function storeContract(label: string, factory: () => StoreFactory): void {
  describe(`${label}: store contract`, () => {
    let f: StoreFactory;
    let store: Store;
    const dead = new Set<number>();
    const isAlive = (o: Owner) => !dead.has(o.pid);

    beforeEach(async () => {
      dead.clear();
      f = factory();
      store = await f.make({ isAlive });
    });
    afterEach(async () => {
      await store.close();
      await f.cleanup();
    });

    it('hands out addresses in order from the start of the pool', async () => {
      const got = [];
      for (let i = 0; i < 3; i++) got.push((await store.allocate(big, [manual]))[0]!.mac);
      expect(got).toEqual(['42:00:00:00:00:01', '42:00:00:00:00:02', '42:00:00:00:00:03']);
    });

    it('records the lease: vm, nic, owners, host, created', async () => {
      const [l] = await store.allocate(big, [{ vm: vm('1'), nic: 2, owners: [{ pid: 42, startTime: 7 }] }]);
      const [listed] = (await store.list()).leases;
      expect(listed).toEqual(l);
      expect(listed).toMatchObject({ version: 1, vm: vm('1'), nic: 2, owners: [{ pid: 42, startTime: 7 }] });
      expect(typeof listed!.host).toBe('string');
      expect(Date.parse(listed!.created)).not.toBeNaN();
    });

    it('a freed address is not handed out again until the cursor comes round', async () => {
      const [a] = await store.allocate(big, [manual]);
      await store.allocate(big, [manual]);
      expect(await store.release(a!.mac)).toBe(true);
      const [c] = await store.allocate(big, [manual]);
      expect(c!.mac).toBe('42:00:00:00:00:03');
    });

    it('multi-NIC allocation gives distinct addresses, all or none', async () => {
      const leases = await store.allocate(big, [0, 1, 2].map((nic) => ({ vm: vm('2'), nic, owners: [] })));
      expect(new Set(leases.map((l) => l.mac)).size).toBe(3);
      // Ask for one more than the tiny pool has free: nothing may stay held.
      const before = (await store.status(tiny)).held;
      await store.allocate(tiny, Array.from({ length: 250 }, () => manual));
      await expect(store.allocate(tiny, Array.from({ length: 7 }, () => manual))).rejects.toThrow(/exhausted/);
      expect((await store.status(tiny)).held).toBe(before + 250);
    });

    it('exhaustion is one clear error naming the pool and its size', async () => {
      await store.allocate(tiny, Array.from({ length: 256 }, () => manual));
      await expect(store.allocate(tiny, [manual])).rejects.toThrow(
        /MAC pool 42:00:00:00:00 \(256 addresses\) is exhausted.*uncloud-vm gc/,
      );
    });

    it('an exhausted pool runs gc before it gives up', async () => {
      const owner = { pid: 999_001, startTime: 1 };
      await store.allocate(tiny, Array.from({ length: 256 }, () => ({ vm: vm('3'), nic: 0, owners: [owner] })));
      dead.add(999_001);
      const [l] = await store.allocate(tiny, [manual]);
      expect(l!.mac).toMatch(/^42:00:00:00:00:/);
      expect((await store.status(tiny)).held).toBe(1);
    });

    it('claims a specific MAC once; a second claim fails naming the holder', async () => {
      await store.allocate(big, [{ vm: vm('4'), nic: 0, owners: [], mac: '42:00:00:00:10:00' }]);
      await expect(store.allocate(big, [{ ...manual, mac: '42:00:00:00:10:00' }])).rejects.toThrow(/already held by VM 0*4/);
      await expect(store.allocate(big, [{ ...manual, mac: '42:00:01:00:00:00' }])).rejects.toThrow(/outside the pool/);
    });

    it('prefers a given MAC and falls back to the next free one when it is held', async () => {
      const [a] = await store.allocate(big, [{ ...manual, prefer: '42:00:00:00:20:00' }]);
      expect(a!.mac).toBe('42:00:00:00:20:00');
      const [b] = await store.allocate(big, [{ ...manual, prefer: '42:00:00:00:20:00' }]);
      expect(b!.mac).toBe('42:00:00:00:00:01');
    });

    it('release: true once, false after; a release for another VM leaves the lease alone', async () => {
      const [l] = await store.allocate(big, [{ vm: vm('5'), nic: 0, owners: [] }]);
      expect(await store.release(l!.mac, vm('6').uuid)).toBe(false);
      expect((await store.list()).leases).toHaveLength(1);
      expect(await store.release(l!.mac, vm('5').uuid)).toBe(true);
      expect(await store.release(l!.mac)).toBe(false);
      expect((await store.list()).leases).toHaveLength(0);
    });

    it('gc frees only leases whose owners are all gone; manual leases stay', async () => {
      const a = { pid: 999_101, startTime: 1 };
      const b = { pid: 999_102, startTime: 1 };
      await store.allocate(big, [
        { vm: vm('7'), nic: 0, owners: [a] },
        { vm: vm('8'), nic: 0, owners: [a, b] },
        manual,
      ]);
      dead.add(a.pid);
      expect(await store.gc()).toHaveLength(1);
      dead.add(b.pid);
      const freed = await store.gc();
      expect(freed.map((l) => l.vm?.name)).toEqual(['8']);
      const left = (await store.list()).leases;
      expect(left).toHaveLength(1);
      expect(left[0]!.vm).toBeNull();
    });

    it('setOwners replaces the owners of leases', async () => {
      const [l] = await store.allocate(big, [{ vm: vm('9'), nic: 0, owners: [{ pid: 1, startTime: 1 }] }]);
      await store.setOwners([l!.mac], [{ pid: 2, startTime: 3 }]);
      expect((await store.list()).leases[0]!.owners).toEqual([{ pid: 2, startTime: 3 }]);
    });

    it('peek shows what comes next and changes nothing', async () => {
      await store.allocate(big, [manual]);
      const before = await store.status(big);
      expect(await store.peek(big, 2)).toEqual(['42:00:00:00:00:02', '42:00:00:00:00:03']);
      expect(await store.status(big)).toEqual(before);
      const [next] = await store.allocate(big, [manual]);
      expect(next!.mac).toBe('42:00:00:00:00:02');
    });

    it('status reports prefix, size, held and cursor', async () => {
      await store.allocate(tiny, [manual, manual]);
      expect(await store.status(tiny)).toMatchObject({ prefix: '42:00:00:00:00', size: 256, held: 2, cursor: '42:00:00:00:00:03' });
      // The tiny pool lies inside the big one; a disjoint pool holds nothing.
      expect((await store.status(big)).held).toBe(2);
      expect((await store.status(parsePool('42:00:01'))).held).toBe(0);
    });

    it('remembers, lists and forgets VM identities', async () => {
      expect(await store.getIdentity('web1')).toBeNull();
      const id = { version: 1 as const, name: 'web1', uuid: vm('1').uuid, macs: ['42:00:00:00:00:05'], updated: new Date(0).toISOString() };
      await store.putIdentity(id);
      await store.putIdentity({ ...id, name: 'web2' });
      expect(await store.getIdentity('web1')).toEqual(id);
      expect((await store.listIdentities()).identities.map((i) => i.name)).toEqual(['web1', 'web2']);
      await store.putIdentity({ ...id, macs: ['42:00:00:00:00:06', '42:00:00:00:00:07'] });
      expect((await store.getIdentity('web1'))!.macs).toEqual(['42:00:00:00:00:06', '42:00:00:00:00:07']);
      expect(await store.deleteIdentity('web1')).toBe(true);
      expect(await store.deleteIdentity('web1')).toBe(false);
      expect(await store.getIdentity('web1')).toBeNull();
      // An identity holds no address.
      expect((await store.status(big)).held).toBe(0);
    });

    it('a damaged identity among others is named apart; the others are listed; it can still be forgotten', async () => {
      const id = (name: string) => ({ version: 1 as const, name, uuid: vm(name.slice(-1)).uuid, macs: ['42:00:00:00:00:05'], updated: new Date(0).toISOString() });
      for (const name of ['web1', 'web2', 'web3']) await store.putIdentity(id(name));
      await f.corruptIdentity('web2', '{"version":1,"name":"web2","uuid":"not-a-uuid","macs":[]}');
      const listed = await store.listIdentities();
      expect(listed.identities.map((i) => i.name)).toEqual(['web1', 'web3']);
      expect(listed.damaged).toEqual([{ key: expect.stringContaining('web2'), why: expect.stringMatching(/damaged \(bad name or uuid\)/) }]);
      await expect(store.getIdentity('web2')).rejects.toThrow(/damaged/);
      expect(await store.deleteIdentity('web2')).toBe(true);
      expect(await store.listIdentities()).toEqual({ identities: [id('web1'), id('web3')], damaged: [] });
    });

    it("a lease record that names another MAC than its key is damaged, not another holder of that MAC", async () => {
      const got = await store.allocate(big, [manual, manual]);
      await f.corrupt(got[1]!.mac, JSON.stringify({ ...got[1], mac: got[0]!.mac }));
      const listed = await store.list();
      expect(listed.leases.map((l) => l.mac)).toEqual([got[0]!.mac]);
      expect(listed.damaged).toEqual([{ key: expect.stringContaining(got[1]!.mac.replaceAll(':', '')), why: expect.stringMatching(/is not the one its name holds/) }]);
    });

    it.each([
      ['a VM name longer than mac allocate --vm takes', { vm: { name: 'x'.repeat(129) } }, /bad vm/],
      ['a VM name with a control character', { vm: { name: 'a\u001b[2Jb' } }, /bad vm/],
      ['a huge host name', { host: 'h'.repeat(20_000) }, /bad host/],
      ['a huge created', { created: '2026'.repeat(5_000) }, /bad created/],
    ])('a lease with %s is damaged (a table would print it), the others are listed', async (_what, change, why) => {
      const got = await store.allocate(big, [manual, manual]);
      await f.corrupt(got[1]!.mac, JSON.stringify({ ...got[1], ...change }));
      const listed = await store.list();
      expect(listed.leases.map((l) => l.mac)).toEqual([got[0]!.mac]);
      expect(listed.damaged).toEqual([{ key: expect.stringContaining(got[1]!.mac.replaceAll(':', '')), why: expect.stringMatching(why) }]);
    });

    it('get: the lease of one MAC, null when it is free', async () => {
      const [l] = await store.allocate(big, [{ vm: vm('3'), nic: 1, owners: [] }]);
      expect(await store.get(l!.mac)).toEqual(l);
      expect(await store.get('42:00:00:00:00:99')).toBeNull();
    });

    it('gc keeps a lease whose owners are gone when the caller says its VM still runs', async () => {
      const gone = { pid: 999_201, startTime: 1 };
      await store.allocate(big, [
        { vm: vm('21'), nic: 0, owners: [gone] },
        { vm: vm('22'), nic: 0, owners: [gone] },
      ]);
      dead.add(gone.pid);
      const freed = await store.gc((l) => l.vm?.name === '21');
      expect(freed.map((l) => l.vm?.name)).toEqual(['22']);
      expect((await store.list()).leases.map((l) => l.vm?.name)).toEqual(['21']);
    });

    it('a damaged record is listed apart, skipped by gc and allocation, and released only by its MAC', async () => {
      const gone = { pid: 999_301, startTime: 1 };
      const got = await store.allocate(big, [manual, { vm: vm('31'), nic: 0, owners: [gone] }, manual]);
      await f.corrupt(got[0]!.mac, 'garbage');
      dead.add(gone.pid);
      const listed = await store.list();
      expect(listed.leases.map((l) => l.mac)).toEqual([got[1]!.mac, got[2]!.mac]);
      expect(listed.damaged).toHaveLength(1);
      expect(listed.damaged[0]!.why).toMatch(/damaged \(not valid JSON\)/);
      expect((await store.gc()).map((l) => l.mac)).toEqual([got[1]!.mac]);
      expect(await store.get(got[0]!.mac)).toBeNull();
      expect(await store.release(got[0]!.mac, vm('31').uuid)).toBe(false);
      const [next] = await store.allocate(big, [manual]);
      expect(next!.mac).not.toBe(got[0]!.mac);
      expect(await store.release(got[0]!.mac)).toBe(true);
      expect((await store.list()).damaged).toEqual([]);
    });

    it('a MAC under a conflict record is not handed out until the conflict is cleared', async () => {
      const holder = (await store.allocate(big, [manual]))[0]!;
      const conflict = { version: 1 as const, mac: '42:00:00:00:00:02', host: 'h9', vm: vm('41'), holder, detected: new Date(0).toISOString() };
      await store.setConflict('42:00:00:00:00:02', conflict);
      expect((await store.list()).conflicts).toEqual([conflict]);
      expect((await store.allocate(big, [manual]))[0]!.mac).toBe('42:00:00:00:00:03');
      await store.setConflict('42:00:00:00:00:02', null);
      expect((await store.list()).conflicts).toEqual([]);
      expect((await store.allocate(big, [{ ...manual, mac: '42:00:00:00:00:02' }]))[0]!.mac).toBe('42:00:00:00:00:02');
    });

    it('status keeps its count right through allocations, releases, gc and damaged records', async () => {
      const gone = { pid: 999_401, startTime: 1 };
      const got = await store.allocate(big, [manual, manual, { vm: vm('51'), nic: 0, owners: [gone] }, { vm: vm('52'), nic: 0, owners: [gone] }, manual]);
      expect((await store.status(big)).held).toBe(5);
      await f.corrupt(got[0]!.mac, 'garbage');
      expect((await store.status(big)).held).toBe(5); // a damaged record still holds its address
      expect(await store.release(got[1]!.mac)).toBe(true);
      expect(await store.release(got[1]!.mac)).toBe(false);
      expect((await store.status(big)).held).toBe(4);
      dead.add(gone.pid);
      expect(await store.gc()).toHaveLength(2);
      expect((await store.status(big)).held).toBe(2);
      await expect(store.allocate(big, [manual, { ...manual, mac: got[4]!.mac }])).rejects.toThrow(/already held/);
      expect((await store.status(big)).held).toBe(2); // a failed allocation takes nothing
      expect(await store.release(got[0]!.mac)).toBe(true);
      expect((await store.status(big)).held).toBe(1);
      expect((await store.status(tiny)).held).toBe(1);
      expect((await store.list()).leases).toHaveLength(1);
    });

    it("the host listing has every lease of this host (manual, VM, damaged) and none of another host's", async () => {
      const other = await f.make({ isAlive, host: 'h-other-host' });
      try {
        const mine = await store.allocate(big, [manual, { vm: vm('61'), nic: 0, owners: [{ pid: 999_501, startTime: 1 }] }, manual]);
        const theirs = await other.allocate(big, [manual, { vm: vm('62'), nic: 1, owners: [] }]);
        await f.corrupt(mine[2]!.mac, 'garbage');
        const here = await store.listHost();
        expect(here.leases).toEqual([mine[0], mine[1]]);
        expect(here.damaged.map((d) => d.key)).toEqual([expect.stringContaining(mine[2]!.mac.replaceAll(':', ''))]);
        expect((await other.listHost()).leases).toEqual(theirs);
        // Another host's gc never touches this host's leases, and the other way round.
        dead.add(999_501);
        expect(await other.gc()).toEqual([]);
        expect((await store.gc()).map((l) => l.mac)).toEqual([mine[1]!.mac]);
        expect((await store.listHost()).leases).toEqual([mine[0]]);
        expect(await other.release(theirs[0]!.mac)).toBe(true);
        expect((await other.listHost()).leases).toEqual([theirs[1]]);
        expect((await store.status(big)).held).toBe(3); // mine[0], damaged mine[2], theirs[1]
      } finally {
        await other.close();
      }
    });

    it('pages give every lease in MAC order, damaged records apart, as list does', async () => {
      const got = await store.allocate(big, Array.from({ length: 7 }, (_, i) => ({ vm: vm(`7${i}`), nic: 0, owners: [] })));
      await store.release(got[3]!.mac);
      await f.corrupt(got[5]!.mac, '{"version":1}');
      const leases = [];
      const damaged = [];
      for await (const page of store.leasePages()) {
        leases.push(...page.leases);
        damaged.push(...page.damaged);
      }
      const listed = await store.list();
      expect(leases).toEqual(listed.leases);
      expect(leases.map((l) => l.mac)).toEqual([0, 1, 2, 4, 6].map((i) => got[i]!.mac));
      expect(damaged).toEqual(listed.damaged);
      expect(damaged).toHaveLength(1);
    });

    it('listConflicts reads the conflict records alone', async () => {
      const holder = (await store.allocate(big, [manual]))[0]!;
      const conflict = { version: 1 as const, mac: holder.mac, host: 'h9', vm: vm('81'), holder, detected: new Date(0).toISOString() };
      await store.setConflict(holder.mac, conflict);
      expect(await store.listConflicts()).toEqual({ conflicts: [conflict], damaged: [] });
      await store.setConflict(holder.mac, null);
      expect(await store.listConflicts()).toEqual({ conflicts: [], damaged: [] });
    });

    it('concurrent allocations in one process never share an address', async () => {
      const all = await Promise.all(Array.from({ length: 20 }, () => store.allocate(big, [manual])));
      expect(new Set(all.map((l) => l[0]!.mac)).size).toBe(20);
    });
  });
}
