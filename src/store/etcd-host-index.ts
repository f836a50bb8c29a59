/**
 * The etcd store's host index: <prefix>/held-by/<host>/<12 hex>, an empty key per lease of <host>, so gc and
 * `list` read what one host holds and `mac pool` counts per host with count-only requests, never reading every
 * lease of the pool (when the held count, etcd-held-count.ts, cannot answer).
 *
 * It never hides a lease: every transaction that writes a lease key writes its index key too, and every one that
 * deletes it deletes both; a kill cannot split a transaction. The index key hangs on no etcd lease (one that an
 * earlier uncloud-vm wrote may hang on its lease key's), so a lease key can move to another etcd lease without
 * it: the agent's re-assert writes one key per lease, not two (etcd-host-lease.ts). When a host's etcd lease
 * expires, its lease keys go and their index keys stay: an index key whose lease is gone or is another host's
 * now is skipped by readers and deleted by gc. <prefix>/held-by-index says every lease has its key: until it is
 * there (a store written before the index existed) readers read every lease instead, and the first gc builds
 * the index.
 */
import type { IKeyValue } from 'etcd3';
import type { EtcdConn } from './etcd-client.js';
import { DAMAGED_HOST } from './etcd-held-count.js';
import { kvPages, listConflicts, listLeases, prefixPages } from './etcd-read.js';
import { parseLease } from './lease.js';
import { byMac } from './policy.js';
import type { DamagedRecord, Lease, LeaseList } from './store.js';

/** Reads or writes per transaction: under etcd's 128 operations. */
const BATCH = 100;

const markerKey = (c: EtcdConn) => `${c.prefix}/held-by-index`;
const macOfHex = (hex: string) => hex.match(/../g)!.join(':');

export async function indexComplete(c: EtcdConn): Promise<boolean> {
  return c.call('index lookup', () => c.client.get(markerKey(c)).exists());
}

/** The MACs a host's index names, in order (a page of keys at a time; at `revision`, if given). */
export async function indexedMacs(c: EtcdConn, host = c.host, revision?: string): Promise<string[]> {
  const out: string[] = [];
  for await (const page of kvPages(c, 'index read', c.indexPrefix(host), revision)) {
    for (const k of page.map((kv) => kv.key.toString())) out.push(macOfHex(k.slice(k.lastIndexOf('/') + 1)));
  }
  return out;
}

/** The lease keys of `macs`, read in batches of one transaction each (undefined: no such key); at `revision`, if given. */
export async function readLeaseKeys(c: EtcdConn, macs: string[], revision?: string): Promise<(IKeyValue | undefined)[]> {
  const out: (IKeyValue | undefined)[] = [];
  for (let i = 0; i < macs.length; i += BATCH) {
    const chunk = macs.slice(i, i + BATCH);
    // A compare that always holds (no key has create revision -1): the transaction is a batch of reads.
    const r = await c.call('index read', () =>
      c.client.if(markerKey(c), 'Create', '!=', -1).then(...chunk.map((m) => (revision === undefined ? c.client.get(c.macKey(m)) : c.client.get(c.macKey(m)).revision(revision)))).commit(),
    );
    chunk.forEach((_, j) => out.push(r.responses[j]?.response_range.kvs[0]));
  }
  return out;
}

/**
 * Every lease key gets its index key (a damaged one under this host: it cannot say whose it is, and this
 * host's gc reports it), only if the lease key is unchanged meanwhile (a changed one was written with its index
 * key); then the marker.
 */
export async function buildIndex(c: EtcdConn): Promise<void> {
  for await (const page of prefixPages(c, 'index build', `${c.prefix}/macs/`)) {
    const kvs = await readLeaseKeys(c, page.map(([k]) => macOfHex(k.slice(k.lastIndexOf('/') + 1))));
    for (const kv of kvs) {
      if (!kv) continue;
      const key = kv.key.toString();
      const mac = macOfHex(key.slice(key.lastIndexOf('/') + 1));
      let host = c.host;
      try {
        host = parseLease(kv.value.toString(), key).host;
      } catch {
        // damaged: under this host
      }
      await c.call('index build', () =>
        c.client.if(key, 'Mod', '==', String(kv.mod_revision)).then(c.client.put(c.indexKey(host, mac)).value('')).commit(),
      );
    }
  }
  await c.call('index build', () => c.client.put(markerKey(c)).value('1').exec());
}

/** Delete an index key of this host whose lease key is absent, or is not this host's (compared on its revision). */
export async function dropIndexKey(c: EtcdConn, mac: string, kv: IKeyValue | undefined): Promise<void> {
  const del = c.client.delete().key(c.indexKey(c.host, mac));
  const txn = kv ? c.client.if(c.macKey(mac), 'Mod', '==', String(kv.mod_revision)) : c.client.if(c.macKey(mac), 'Create', '==', 0);
  await c.call('index repair', () => txn.then(del).commit());
}

/** Held addresses per host under a pool prefix (hex), with one count-only request per host. */
async function countByHost(c: EtcdConn, prefixHex: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const root = `${c.prefix}/held-by/`;
  const end = `${c.prefix}/held-by0`; // prefixEnd(root)
  let from = root;
  for (;;) {
    // The next host: the first index key from here on (one key, no value).
    const first = await c.call('count', () => c.client.getAll().inRange({ start: from, end }).limit(1).keys());
    if (first.length === 0) return out;
    const host = first[0]!.slice(root.length, first[0]!.indexOf('/', root.length));
    const n = await c.call('count', () => c.client.getAll().prefix(`${c.indexPrefix(host)}${prefixHex}`).count());
    if (n > 0) out[host] = n;
    from = `${root}${host}0`; // past every key of this host ('/' + 1)
  }
}

/**
 * This host's index keys with their lease keys (undefined: the lease is gone), all as they were at one revision
 * (returned, for gc's check of this host's held count). Builds the index if it is not whole yet.
 */
export async function hostLeaseKeys(c: EtcdConn): Promise<{ revision: string; keys: { mac: string; kv: IKeyValue | undefined }[] }> {
  if (!(await indexComplete(c))) await buildIndex(c);
  const revision = (await c.call('index read', () => c.client.get(markerKey(c)).exec())).header.revision;
  const macs = await indexedMacs(c, c.host, revision);
  const kvs = await readLeaseKeys(c, macs, revision);
  return { revision, keys: macs.map((mac, i) => ({ mac, kv: kvs[i] })) };
}

/** The leases of this host through its index (every lease, read only, until the index is whole). */
export async function listHostLeases(c: EtcdConn): Promise<LeaseList> {
  if (!(await indexComplete(c))) {
    const all = await listLeases(c);
    return { ...all, leases: all.leases.filter((l) => l.host === c.host) };
  }
  const macs = await indexedMacs(c);
  const kvs = await readLeaseKeys(c, macs);
  const leases: Lease[] = [];
  const damaged: DamagedRecord[] = [];
  for (const kv of kvs) {
    if (!kv) continue;
    try {
      const lease = parseLease(kv.value.toString(), kv.key.toString());
      if (lease.host === c.host) leases.push(lease);
    } catch (err) {
      damaged.push({ key: kv.key.toString(), why: (err as Error).message });
    }
  }
  const conflicts = await listConflicts(c);
  return { leases: leases.sort(byMac), damaged: [...damaged, ...conflicts.damaged], conflicts: conflicts.conflicts };
}

/**
 * Held per host under a pool prefix: count-only requests on the index, or (until it is whole, or while index
 * keys of expired leases are left, which the per-host counts cannot tell) every lease read.
 */
export async function heldByHost(c: EtcdConn, prefixHex: string): Promise<Record<string, number>> {
  if (await indexComplete(c)) {
    // Every lease key has an index key: as many of them as lease keys means none is left over.
    const [byHost, held] = await Promise.all([
      countByHost(c, prefixHex),
      c.call('count', () => c.client.getAll().prefix(`${c.prefix}/macs/${prefixHex}`).count()),
    ]);
    if (Object.values(byHost).reduce((x, y) => x + y, 0) === held) return byHost;
  }
  const byHost: Record<string, number> = {};
  for await (const page of prefixPages(c, 'list', `${c.prefix}/macs/${prefixHex}`)) {
    for (const [k, v] of page) {
      let host = DAMAGED_HOST;
      try {
        host = parseLease(v, k).host;
      } catch {
        // counted as held (the key is there), under its own heading
      }
      byHost[host] = (byHost[host] ?? 0) + 1;
    }
  }
  return byHost;
}
