/**
 * The agent's re-assert at a size that crosses many chunks, over every kind of key it meets at once: keys on
 * no etcd lease, keys and index keys on an old etcd lease or already on the new one (as an earlier uncloud-vm
 * left them), keys gone (their index keys left behind), index keys missing, owners changed, keys another host
 * took, and this host's leases that run no VM between them. Afterwards every key is where it must be, once: on the new lease, with its
 * index key on no etcd lease, counted once; and when the old leases go, nothing of it goes with them.
 */
import type { IKeyValue } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { writeEtcdLeases } from '../../scripts/lib/lease-fixture.mjs';
import { formatMac, parsePool } from '../../src/core/mac.js';
import type { Owner } from '../../src/core/owner.js';
import { parseStore, type EtcdTarget } from '../../src/core/store-url.js';
import { CountDelta } from '../../src/store/etcd-held-count.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import type { Lease } from '../../src/store/store.js';
import { useEtcd } from '../helpers/etcd.js';

const pool = parsePool('42:00:00');
const LIVE: Owner = { pid: process.pid, startTime: 1 };
const HOST = 'h-agent';
const TOTAL = 1200;

const e = useEtcd();

let n = 0;
/** A fresh prefix with TOTAL leases of HOST (every sixth without owners: not a running VM) and a store on it. */
async function fixture(): Promise<{ p: string; store: EtcdStore; all: Lease[]; running: Lease[] }> {
  n += 1;
  const p = `/lease-${process.pid}-${n}`;
  const store = new EtcdStore({ target: parseStore(e.server.url(p.slice(1))) as EtcdTarget, host: HOST });
  await writeEtcdLeases(e.server.endpoint, p, TOTAL, { base: pool.base, first: 1, host: HOST, owners: (i: number) => (i % 6 === 5 ? [] : [LIVE]) });
  const all = (await store.list()).leases;
  return { p, store, all, running: all.filter((l) => l.owners.length > 0) };
}

const hex = (mac: string) => mac.replaceAll(':', '');
const kvs = async (prefix: string): Promise<Map<string, IKeyValue>> =>
  new Map((await e.raw.getAll().prefix(prefix).exec()).kvs.map((kv) => [kv.key.toString().slice(prefix.length), kv]));

/** What must hold of every lease key and index key under the prefix, whatever happened. */
async function consistent(p: string, store: EtcdStore): Promise<void> {
  const macs = await kvs(`${p}/macs/`);
  const index = await kvs(`${p}/held-by/`);
  for (const [h, kv] of macs) {
    const host = (JSON.parse(kv.value.toString()) as Lease).host;
    const ix = index.get(`${host}/${h}`);
    expect(ix, `index key of ${h}`).toBeDefined();
    // On no etcd lease, or on its lease key's: never on one that can expire while the lease key stays.
    expect([String(kv.lease), '0']).toContain(String(ix!.lease));
  }
  // The count says what the keys say.
  const byHost: Record<string, number> = {};
  for (const kv of macs.values()) {
    const host = (JSON.parse(kv.value.toString()) as Lease).host;
    byHost[host] = (byHost[host] ?? 0) + 1;
  }
  const st = await store.status(pool);
  expect({ held: st.held, byHost: st.byHost }).toEqual({ held: macs.size, byHost });
}

describe('etcd re-assert at scale', () => {
  it('1,200 leases in every state: each running VM\'s key once on the new lease, index and count right, and nothing goes with the old leases', async () => {
    const { p, store, all, running } = await fixture();
    // The leases of a restarted agent's predecessor: keys and index keys on its etcd lease, as uncloud-vm wrote
    // them before, and counted there.
    const onLease = async (l: Lease, id: string): Promise<void> => {
      const k = (await e.raw.get(`${p}/macs/${hex(l.mac)}`).exec()).kvs[0]!;
      const count = new CountDelta().move(l.mac, { host: HOST, lease: '0' }, { host: HOST, lease: id }).ops({ prefix: p });
      const put = (key: string, value: Buffer) => ({ request_put: { key: Buffer.from(key), value, lease: id } });
      await e.raw.kv.txn({ compare: [], success: [put(`${p}/macs/${hex(l.mac)}`, k.value), put(`${p}/held-by/${HOST}/${hex(l.mac)}`, Buffer.alloc(0)), ...count], failure: [] });
    };
    const old = e.raw.lease(60);
    const oldId = await old.grant();
    for (const l of running.filter((_, i) => i % 5 === 0)) await onLease(l, oldId);
    const first = await store.takeLease();
    const others = running.filter((_, i) => i % 5 !== 0);
    // Already on the new lease, with their index keys (written there by an earlier uncloud-vm): kept as they are.
    for (const l of others.filter((_, i) => i % 9 === 5)) await onLease(l, first.id);
    const gone = others.filter((_, i) => i % 9 === 1); // expired: the key is gone, its index key left behind
    const noIndex = others.filter((_, i) => i % 9 === 2); // index key missing (a store before the index)
    const owners = others.filter((_, i) => i % 9 === 3); // the VM was started again: other owners
    const taken = others.filter((_, i) => i % 9 === 4).slice(0, 20); // another host holds the key now
    for (const l of gone) {
      await store.release(l.mac);
      await e.raw.put(`${p}/held-by/${HOST}/${hex(l.mac)}`).value('');
    }
    for (const l of noIndex) await e.raw.delete().key(`${p}/held-by/${HOST}/${hex(l.mac)}`);
    const other = new EtcdStore({ target: parseStore(e.server.url(p.slice(1))) as EtcdTarget, host: 'h-other' });
    for (const l of taken) {
      await store.release(l.mac);
      await other.allocate(pool, [{ vm: { uuid: '00000000-0000-4000-8000-0000000000ff', name: 'theirs' }, nic: 0, owners: [], mac: l.mac }]);
    }
    const takenMacs = new Set(taken.map((l) => l.mac));
    const NEW_OWNER: Owner = { pid: process.pid, startTime: 2 };
    const expected = running.map((l) => (owners.includes(l) ? { ...l, owners: [NEW_OWNER] } : l));
    expect(running.length).toBe(1000);

    const r = await store.reassert(first.id, expected);
    expect(r.kept).toBe(1000 - taken.length);
    expect(r.recreated.map((l) => l.mac)).toEqual(gone.map((l) => l.mac));
    expect(r.conflicts.map((c) => c.mac).sort()).toEqual(taken.map((l) => l.mac).sort());
    await consistent(p, store);
    const macs = await kvs(`${p}/macs/`);
    expect(macs.size).toBe(TOTAL);
    for (const l of expected) {
      const kv = macs.get(hex(l.mac))!;
      const rec = JSON.parse(kv.value.toString()) as Lease;
      if (takenMacs.has(l.mac)) {
        expect(rec.host).toBe('h-other');
        continue;
      }
      expect(String(kv.lease), l.mac).toBe(first.id);
      expect(rec.owners).toEqual(l.owners);
    }
    // The leases that run no VM stay as they were: on no etcd lease.
    for (const l of all.filter((x) => x.owners.length === 0)) expect(String(macs.get(hex(l.mac))!.lease)).toBe('0');

    // The predecessor's lease expires: none of the keys the new lease holds goes with it, nor their index keys.
    await old.revoke();
    expect((await kvs(`${p}/macs/`)).size).toBe(TOTAL);
    await consistent(p, store);
    expect((await store.listHost()).leases).toHaveLength(TOTAL - taken.length);

    // Lost again: a second lease, the keys known from the pass before; then the first one goes.
    const second = await store.takeLease();
    const again = await store.reassert(second.id, expected);
    expect(again).toMatchObject({ kept: 1000 - taken.length, recreated: [] });
    await first.lease.revoke();
    const after = await kvs(`${p}/macs/`);
    expect(after.size).toBe(TOTAL);
    expect([...after.values()].filter((kv) => String(kv.lease) === second.id)).toHaveLength(1000 - taken.length);
    await consistent(p, store);
    expect((await store.listHost()).leases).toHaveLength(TOTAL - taken.length);
    // The running VMs' keys go with the second lease (the host died), and their count with them; gc deletes their index keys.
    await second.lease.revoke();
    expect((await kvs(`${p}/macs/`)).size).toBe(TOTAL - 1000 + taken.length);
    await consistent(p, store);
    await store.gc();
    expect((await kvs(`${p}/held-by/`)).size).toBe(TOTAL - 1000 + taken.length);
    await store.close();
    await other.close();
  });

  it('running VMs\' MACs in runs and apart, other hosts\' and manual leases between them, some keys gone: read by ranges, each found for its own lease, nothing else touched', async () => {
    n += 1;
    const p = `/lease-gaps-${process.pid}-${n}`;
    const url = e.server.url(p.slice(1));
    const store = new EtcdStore({ target: parseStore(url) as EtcdTarget, host: HOST });
    const other = new EtcdStore({ target: parseStore(url) as EtcdTarget, host: 'h-other' });
    // MACs apart by 1 (runs), by 4 (still one range), by 5 (a read of its own), and far.
    const steps = [1, 1, 1, 1, 1, 1, 4, 5, 4, 2, 2, 50, 5, 5, 1, 3];
    const wanted: number[] = [];
    for (let at = 0x1000, k = 0; wanted.length < 340; k++) wanted.push((at += steps[k % steps.length]!));
    const macOf = (x: number) => formatMac(pool.base + x);
    const vmOf = (x: number) => ({ uuid: `00000000-0000-4000-8000-${x.toString(16).padStart(12, '0')}`, name: `g-${x.toString(16)}` });
    const between = Array.from({ length: wanted.at(-1)! - wanted[0]! }, (_, i) => wanted[0]! + i).filter((x) => !wanted.includes(x));
    // Half the running VMs' keys on this process's own etcd lease with their owners, half with none (their owners change).
    await Promise.all(wanted.map((x, i) => store.allocate(pool, [{ vm: vmOf(x), nic: 0, owners: i % 2 ? [LIVE] : [], mac: macOf(x) }])));
    // Between them: other hosts' leases and this host's manual ones, which run no VM.
    await Promise.all(between.map((x, i) => (i % 2 ? other : store).allocate(pool, [{ vm: null, nic: null, owners: [], mac: macOf(x) }])));
    const gone = wanted.filter((_, i) => i % 13 === 7);
    for (const x of gone) expect(await store.release(macOf(x))).toBe(true);
    const before = await kvs(`${p}/macs/`);
    const expected: Lease[] = wanted.map((x) => ({ version: 1, mac: macOf(x), vm: vmOf(x), nic: 0, host: HOST, owners: [LIVE], created: new Date(0).toISOString() }));

    const agent = await store.takeLease();
    const r = await store.reassert(agent.id, expected);
    expect(r.conflicts).toEqual([]);
    expect(r.kept).toBe(wanted.length);
    expect(r.recreated.map((l) => l.mac)).toEqual(gone.map(macOf));
    const after = await kvs(`${p}/macs/`);
    for (const x of wanted) {
      const kv = after.get(hex(macOf(x)))!;
      const rec = JSON.parse(kv.value.toString()) as Lease;
      expect(String(kv.lease), macOf(x)).toBe(agent.id);
      expect(rec).toMatchObject({ host: HOST, vm: vmOf(x), owners: [LIVE] });
    }
    for (const x of between) expect(after.get(hex(macOf(x)))!.mod_revision, macOf(x)).toBe(before.get(hex(macOf(x)))!.mod_revision);
    expect(after.size).toBe(wanted.length + between.length);
    await consistent(p, store);
    await agent.lease.revoke();
    await store.close();
    await other.close();
  });
});
