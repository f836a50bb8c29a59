/**
 * The etcd store's held count (counts/…): `mac pool` reads it instead of counting every lease key, so it must
 * say what the lease keys say after every kind of write, after etcd expires a host's lease (no transaction at
 * all), under racing writers and under processes killed at any instant; a store written before it is counted by
 * gc, and a count that cannot be right is not trusted.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { writeEtcdLeases } from '../../scripts/lib/lease-fixture.mjs';
import { parsePool } from '../../src/core/mac.js';
import type { Owner } from '../../src/core/owner.js';
import { parseStore, type EtcdTarget } from '../../src/core/store-url.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import type { LeaseRequest } from '../../src/store/store.js';
import { cli, sandbox } from '../helpers/cli.js';
import { useEtcd } from '../helpers/etcd.js';

const pool = parsePool('42:00:00');
const DEAD: Owner = { pid: 4_000_005, startTime: 1 };
const LIVE: Owner = { pid: process.pid, startTime: 1 };
const isAlive = (o: Owner) => o.pid !== DEAD.pid;
const vm = (n: string) => ({ uuid: `00000000-0000-4000-8000-${n.padStart(12, '0')}`, name: `vm-${n}` });
const manual: LeaseRequest = { vm: null, nic: null, owners: [] };
const running = (n: string, owners = [LIVE]): LeaseRequest => ({ vm: vm(n), nic: 0, owners });

const e = useEtcd();

let n = 0;
const stores: EtcdStore[] = [];
/** A fresh prefix; stores on it for hosts, closed at the end of the test. */
function fresh(ttlS?: number): { p: string; url: string; store: (host: string) => EtcdStore } {
  n += 1;
  const name = `count-${process.pid}-${n}`;
  const url = e.server.url(name, ttlS);
  return {
    p: `/${name}`,
    url,
    store: (host) => {
      const s = new EtcdStore({ target: parseStore(url) as EtcdTarget, host, isAlive });
      stores.push(s);
      return s;
    },
  };
}
afterAll(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
});

/** What the lease keys say: held under the pool, and per host (a damaged record under "damaged records"). */
async function truth(p: string): Promise<{ held: number; byHost: Record<string, number> }> {
  const all = await e.raw.getAll().prefix(`${p}/macs/420000`).strings();
  const byHost: Record<string, number> = {};
  for (const v of Object.values(all)) {
    let host = 'damaged records';
    try {
      host = (JSON.parse(v) as { host: string }).host;
    } catch {
      // damaged
    }
    byHost[host] = (byHost[host] ?? 0) + 1;
  }
  return { held: Object.keys(all).length, byHost };
}

const counted = async (s: EtcdStore) => {
  const st = await s.status(pool);
  return { held: st.held, byHost: st.byHost };
};
const marked = async (p: string) => (await e.raw.get(`${p}/counts-complete`).exists()) && (await e.raw.getAll().prefix(`${p}/counts/`).count()) > 0;

describe('etcd held count', () => {
  it('follows allocation, release, setOwners across hosts, gc and multi-NIC requests; mac pool reads the count, not the keys', async () => {
    const { p, store } = fresh();
    const a = store('h-one');
    const b = store('h-two');
    expect(await counted(a)).toEqual({ held: 0, byHost: {} }); // an empty store is counted from here on
    const steps: (() => Promise<unknown>)[] = [
      () => a.allocate(pool, [manual, manual, manual]),
      () => a.allocate(pool, [running('1'), { ...running('1'), nic: 1 }]),
      () => b.allocate(pool, [manual]),
      () => a.allocate(pool, [running('2', [DEAD])]),
      () => b.setOwners(['42:00:00:00:00:01'], [LIVE]), // a manual lease of h-one becomes h-two's running VM's
      () => a.release('42:00:00:00:00:02'),
      () => a.gc(), // frees the dead owner's lease
      () => b.release('42:00:00:00:00:01'),
      () => a.allocate(pool, Array.from({ length: 70 }, () => manual)), // two transactions
    ];
    for (const step of steps) {
      await step();
      expect(await counted(a)).toEqual(await truth(p));
    }
    expect(await truth(p)).toEqual({ held: 74, byHost: { 'h-one': 73, 'h-two': 1 } });
    expect(await marked(p)).toBe(true);
    // The count is read, not the keys: a lease key deleted behind the store's back is still counted.
    await e.raw.delete().key(`${p}/macs/420000000003`);
    expect((await counted(a)).held).toBe(74);
  });

  it('a host lease that expires or is revoked takes its keys and their count with it', async () => {
    const { p, store } = fresh(2);
    const a = store('h-one');
    const b = store('h-two');
    await counted(a);
    const agent = await a.takeLease(); // h-one's running VMs hang on its agent's lease
    await a.allocate(pool, [running('1'), running('2'), manual]);
    const other = await b.takeLease();
    await b.allocate(pool, [running('3'), manual]);
    expect(await counted(a)).toEqual({ held: 5, byHost: { 'h-one': 3, 'h-two': 2 } });
    agent.lease.release(); // no more keep-alives: etcd expires it after the TTL, without any transaction of ours
    for (let i = 0; i < 100 && (await e.raw.getAll().prefix(`${p}/macs/`).count()) > 3; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await counted(a)).toEqual({ held: 3, byHost: { 'h-one': 1, 'h-two': 2 } });
    expect(await counted(a)).toEqual(await truth(p));
    await other.lease.revoke();
    expect(await counted(b)).toEqual({ held: 2, byHost: { 'h-one': 1, 'h-two': 1 } });
    expect(await counted(b)).toEqual(await truth(p));
  });

  it('re-assert moves the count with the keys to the new lease: revoking it takes them off', async () => {
    const { p, store } = fresh();
    const a = store('bench-host');
    await writeEtcdLeases(e.server.endpoint, p, 300, { base: pool.base, first: 1, host: 'bench-host', owners: () => [LIVE] });
    const expected = (await a.list()).leases;
    const first = await a.takeLease();
    expect((await a.reassert(first.id, expected)).kept).toBe(300);
    expect(await counted(a)).toEqual({ held: 300, byHost: { 'bench-host': 300 } });
    // A second lease (the agent's lease was lost and it took another): keys move again, known from the last pass.
    const second = await a.takeLease();
    expect((await a.reassert(second.id, expected)).kept).toBe(300);
    await first.lease.revoke(); // nothing hangs on it any more
    expect(await counted(a)).toEqual({ held: 300, byHost: { 'bench-host': 300 } });
    await second.lease.revoke();
    expect(await counted(a)).toEqual({ held: 0, byHost: {} });
    expect(await truth(p)).toEqual({ held: 0, byHost: {} });
  });

  it('a pass after a pass confirms known keys by revision, and still sees what changed meanwhile: a key gone, one taken by another host, one rewritten', async () => {
    const { p, store } = fresh();
    const a = store('bench-host');
    await writeEtcdLeases(e.server.endpoint, p, 300, { base: pool.base, first: 1, host: 'bench-host', owners: () => [LIVE] });
    const expected = (await a.list()).leases;
    const { id, lease } = await a.takeLease();
    expect(await a.reassert(id, expected)).toMatchObject({ kept: 300, recreated: [], conflicts: [] });
    const [gone, taken, rewritten] = [expected[7]!, expected[150]!, expected[299]!];
    const hex = (mac: string) => mac.replaceAll(':', '');
    await a.release(gone.mac);
    await a.release(taken.mac);
    const theirs = await store('other-host').allocate(pool, [{ vm: vm('99'), nic: 0, owners: [], mac: taken.mac }]);
    await lease.put(`${p}/macs/${hex(rewritten.mac)}`).value(JSON.stringify({ ...rewritten, owners: [DEAD] }));
    const again = await a.reassert(id, expected);
    expect(again.recreated.map((l) => l.mac)).toEqual([gone.mac]);
    expect(again.conflicts.map((c) => [c.mac, c.holder?.host])).toEqual([[taken.mac, 'other-host']]);
    expect(again.kept).toBe(299);
    expect((await a.get(rewritten.mac))?.owners).toEqual([LIVE]);
    expect(theirs[0]!.mac).toBe(taken.mac);
    expect(await counted(a)).toEqual(await truth(p));
    // A third pass: nothing changed, no lease key written (the conflict stands, recorded again).
    const mods = async () => (await e.raw.getAll().prefix(`${p}/macs/`).exec()).kvs.map((kv) => String(kv.mod_revision));
    const before = await mods();
    expect(await a.reassert(id, expected)).toMatchObject({ kept: 299, recreated: [], conflicts: [{ mac: taken.mac }] });
    expect(await mods()).toEqual(before);
  });

  it('racing allocations, releases, setOwners and re-asserts on three stores leave the count right', async () => {
    const { p, store } = fresh();
    const stores3 = [store('h-one'), store('h-one'), store('h-two')];
    await counted(stores3[0]!);
    const agent = await stores3[0]!.takeLease();
    const rnd = (k: number) => Math.floor(Math.random() * k);
    let released = 0;
    const worker = async (s: EtcdStore, seed: number): Promise<void> => {
      const mine: string[] = [];
      for (let i = 0; i < 40; i++) {
        const op = rnd(4);
        if (op <= 1 || mine.length === 0) {
          const reqs = Array.from({ length: 1 + rnd(3) }, (_, j) => (rnd(2) ? manual : running(`${seed}${i}${j}`)));
          mine.push(...(await s.allocate(pool, reqs)).map((l) => l.mac));
        } else if (op === 2) {
          if (await s.release(mine.splice(rnd(mine.length), 1)[0]!)) released += 1;
        } else {
          await s.setOwners([mine[rnd(mine.length)]!], [LIVE]);
        }
      }
    };
    const reasserting = (async () => {
      for (let i = 0; i < 5; i++) {
        await stores3[0]!.reassert(agent.id, (await stores3[0]!.listHost()).leases.filter((l) => l.owners.length > 0));
      }
    })();
    await Promise.all([...stores3.flatMap((s, i) => [worker(s, 11 + i), worker(s, 23 + i)]), reasserting]);
    expect(released).toBeGreaterThan(10);
    expect(await counted(stores3[2]!)).toEqual(await truth(p));
    await agent.lease.revoke();
    expect(await counted(stores3[2]!)).toEqual(await truth(p));
  });

  it('`mac allocate` and `mac release` killed at any instant leave the count right', async () => {
    const { p, url, store } = fresh();
    const a = store('h-kill');
    await counted(a);
    const sb = sandbox({ UNCLOUD_VM_STORE: url, UNCLOUD_VM_HOST: 'h-kill' });
    try {
      await a.allocate(pool, Array.from({ length: 40 }, () => manual));
      const outcomes = { released: 0, allocated: 0, killed: 0 };
      for (let round = 0; round < 4; round++) {
        const runs = Array.from({ length: 12 }, (_, i) => {
          // Every other run is killed, each at another moment (from before it connects to after it is done).
          const release = i % 4 < 2;
          const args = release ? ['mac', 'release', `42:00:00:00:00:${(round * 5 + i + 1).toString(16).padStart(2, '0')}`] : ['mac', 'allocate'];
          const kill = i % 2 === 1 ? (c: ChildProcess) => setTimeout(() => c.kill('SIGKILL'), 70 * i + 25 * round) : undefined;
          return cli(args, { env: sb.env, ...(kill ? { onSpawn: kill } : {}) }).then((r) => {
            if (r.signal === 'SIGKILL') outcomes.killed += 1;
            else if (r.code === 0) outcomes[release ? 'released' : 'allocated'] += 1;
          });
        });
        await Promise.all(runs);
        expect(await counted(a)).toEqual(await truth(p));
      }
      // Some finished, some were killed on the way (where exactly is up to the machine).
      expect(outcomes.killed).toBeGreaterThan(0);
      expect(outcomes.released).toBeGreaterThan(0);
      expect(outcomes.allocated).toBeGreaterThan(0);
    } finally {
      sb.cleanup();
    }
  });

  it('a store written before the count: mac pool counts the keys, gc counts them once (while others write), then the count answers', async () => {
    const { p, store } = fresh();
    const a = store('h-one');
    const b = store('h-two');
    // Lease keys as an earlier uncloud-vm wrote them: no count, no marker; some on an etcd lease.
    const lease = (mac: string, host: string, owners: Owner[]) => JSON.stringify({ version: 1, mac, vm: vm(mac.slice(-2)), nic: 0, host, owners, created: new Date(0).toISOString() });
    const old = e.raw.lease(60);
    await old.grant();
    await e.raw.put(`${p}/macs/420000000010`).value(lease('42:00:00:00:00:10', 'h-one', [LIVE]));
    await old.put(`${p}/macs/420000000011`).value(lease('42:00:00:00:00:11', 'h-one', [LIVE]));
    await old.put(`${p}/macs/420000000012`).value(lease('42:00:00:00:00:12', 'h-two', [LIVE]));
    await e.raw.put(`${p}/macs/420000000013`).value('garbage');
    expect(await counted(a)).toEqual(await truth(p));
    expect(await e.raw.get(`${p}/counts-complete`).exists()).toBe(false);
    await Promise.all([a.gc(), b.gc(), b.allocate(pool, [manual, manual]), a.allocate(pool, [running('1')])]);
    expect(await marked(p)).toBe(true);
    await b.allocate(pool, [manual]);
    const st = await counted(a);
    expect(st.held).toBe((await truth(p)).held);
    // The damaged record is counted apart, the same whichever host's gc counted it.
    expect(st).toEqual({ held: 8, byHost: { 'h-one': 3, 'h-two': 4, 'damaged records': 1 } });
    await old.revoke();
    expect(await counted(a)).toEqual({ held: 6, byHost: { 'h-one': 2, 'h-two': 3, 'damaged records': 1 } });
  });

  it("a count changed by hand (a counter key put once more, a '-' key deleted, every key copied once as etcdctl make-mirror does) is set right by the host's own gc, also while allocations and other gcs run", async () => {
    const { p, store } = fresh();
    const a = store('h-one');
    const b = store('h-two');
    await counted(a);
    const agent = await a.takeLease();
    await a.allocate(pool, [running('1'), running('2'), manual, manual, manual]);
    await b.allocate(pool, [manual, manual]);
    await a.release('42:00:00:00:00:03'); // puts h-one's '-0' counter key
    expect(await counted(a)).toEqual(await truth(p));
    await e.raw.put(`${p}/counts/420000/h-one/0/+0`).value('');
    expect(await counted(a)).toEqual({ held: 7, byHost: { 'h-one': 5, 'h-two': 2 } });
    expect(await truth(p)).toEqual({ held: 6, byHost: { 'h-one': 4, 'h-two': 2 } });
    expect(await a.gc()).toEqual([]);
    expect(await counted(a)).toEqual(await truth(p));

    await e.raw.delete().key(`${p}/counts/420000/h-one/0/-0`);
    expect((await counted(a)).held).toBe((await truth(p)).held + 1);
    await a.gc();
    expect(await counted(a)).toEqual(await truth(p));

    // h-two's count is h-two's gc's to set right; h-one's gc costs h-one's keys and leaves it.
    await e.raw.put(`${p}/counts/420000/h-two/0/+1`).value('');
    await a.gc();
    expect((await counted(a)).byHost?.['h-two']).toBe(4);
    await b.gc();
    expect(await counted(a)).toEqual(await truth(p));

    // Counts put wrong on the agent's lease, then gcs of both hosts (two of h-one's) among racing allocations.
    for (let round = 0; round < 8; round++) {
      await agent.lease.put(`${p}/counts/420000/h-one/${agent.id}/+${round % 4}`).value('');
      const allocations = Array.from({ length: 8 }, (_, i) => (i % 3 === 2 ? b : a).allocate(pool, [i % 2 ? manual : running(`${round}${i}`)]));
      await Promise.all([a.gc(), a.gc(), b.gc(), ...allocations]);
      expect(await counted(a)).toEqual(await truth(p));
    }

    // A lease record damaged by hand after it was counted under h-one: counted under "damaged records" after gc.
    await e.raw.put(`${p}/macs/420000000004`).value('garbage');
    await e.raw.put(`${p}/counts/420000/h-one/0/+0`).value('');
    await a.gc();
    expect(await counted(a)).toEqual(await truth(p));
    expect((await truth(p)).byHost['damaged records']).toBe(1);

    // etcdctl make-mirror copies every key once, without its etcd lease: each counter key then says 2^b once.
    const to = fresh();
    for (const kv of (await e.raw.getAll().prefix(`${p}/`).exec()).kvs) {
      await e.raw.put(`${to.p}${kv.key.toString().slice(p.length)}`).value(kv.value);
    }
    const [a2, b2] = [to.store('h-one'), to.store('h-two')];
    expect(await counted(a2)).not.toEqual(await truth(to.p));
    await Promise.all([a2.gc(), b2.gc(), a2.allocate(pool, [manual]), b2.allocate(pool, [running('77')])]);
    expect(await counted(a2)).toEqual(await truth(to.p));
    // The copied counter keys hang on no etcd lease, nor does what set them right: the agent's lease going leaves them be.
    await agent.lease.revoke();
    expect(await counted(a2)).toEqual(await truth(to.p));
    expect(await counted(a)).toEqual(await truth(p));
  });

  it('a count that cannot be right is not trusted: mac pool counts the keys instead, and gc counts again', async () => {
    const { p, store } = fresh();
    const a = store('h-one');
    await counted(a);
    await a.allocate(pool, [manual, manual, manual]);
    await e.raw.delete().key(`${p}/macs/420000000001`); // behind the store's back: the count says 3
    expect((await counted(a)).held).toBe(3);
    await e.raw.put(`${p}/counts/420000/h-one/0/junk`).value('');
    expect(await counted(a)).toEqual({ held: 2, byHost: { 'h-one': 2 } });
    await e.raw.delete().key(`${p}/counts/420000/h-one/0/junk`);
    await e.raw.put(`${p}/counts/420000/h-two/0/base`).value('nine');
    expect(await counted(a)).toEqual({ held: 2, byHost: { 'h-one': 2 } });
    await e.raw.delete().key(`${p}/counts/420000/h-two/0/base`);
    // A record damaged by hand after it was counted under h-one, then released: "damaged records" goes below zero.
    await e.raw.put(`${p}/macs/420000000002`).value('garbage');
    expect(await a.release('42:00:00:00:00:02')).toBe(true);
    expect(await counted(a)).toEqual({ held: 1, byHost: { 'h-one': 1 } });
    expect(await a.gc()).toEqual([]); // counts again at one revision
    expect((await e.raw.getAll().prefix(`${p}/counts/420000/damaged records/`).count()) > 0).toBe(true);
    await e.raw.delete().key(`${p}/macs/420000000003`);
    expect(await counted(a)).toEqual({ held: 1, byHost: { 'h-one': 1 } }); // the count again, not the keys
    expect(await truth(p)).toEqual({ held: 0, byHost: {} });
  });
});
