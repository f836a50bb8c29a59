/**
 * Reading the etcd store: one lease, every lease (a page at a time, so no range meets etcd's 4 MiB reply
 * limit), the conflict records, and the pool's status from a count. This host's leases are read through the
 * host index (etcd-host-index.ts).
 */
import type { IKeyValue } from 'etcd3';
import { formatMac, macAt, parseMac, type Pool } from '../core/mac.js';
import { type EtcdConn, macHex, prefixEnd } from './etcd-client.js';
import { readCursor } from './etcd-free-scan.js';
import { parseConflict, parseLease } from './lease.js';
import { byMac } from './policy.js';
import type { Conflict, DamagedRecord, Lease, LeaseList, LeasePage, PoolStatus } from './store.js';

/** Keys per page of a long read: etcd refuses a reply over 4 MiB (about 20,000 lease records in one). */
const PAGE = 2000;

/**
 * Every key and value from `start` (inclusive) to `end` (exclusive), a page at a time, so a range of any size
 * is read without meeting etcd's 4 MiB reply limit.
 */
export async function* pages(c: EtcdConn, what: string, start: string, end: string): AsyncGenerator<[string, string][]> {
  for await (const kvs of rangePages(c, what, start, end)) yield kvs.map((kv): [string, string] => [kv.key.toString(), kv.value.toString()]);
}

/** The same as whole key-values (revisions, version, etcd lease), optionally as the store was at `revision`. */
async function* rangePages(c: EtcdConn, what: string, start: string, end: string, revision?: string): AsyncGenerator<IKeyValue[]> {
  let from = start;
  for (;;) {
    const range = { start: from, end };
    // In key order, as etcd keeps them (asking for a sort would make etcd read the whole range for every page).
    const res = await c.call(what, () => {
      const q = c.client.getAll().inRange(range).limit(PAGE);
      return (revision === undefined ? q : q.revision(revision)).exec();
    });
    if (res.kvs.length > 0) yield res.kvs;
    if (!res.more || res.kvs.length === 0) return;
    from = `${res.kvs[res.kvs.length - 1]!.key.toString()}\u0000`;
  }
}

/** Every key-value under a prefix, a page at a time (at `revision`, if given). */
export function kvPages(c: EtcdConn, what: string, prefix: string, revision?: string): AsyncGenerator<IKeyValue[]> {
  return rangePages(c, what, prefix, prefixEnd(prefix), revision);
}

/** The same for every key under a prefix. */
export function prefixPages(c: EtcdConn, what: string, prefix: string): AsyncGenerator<[string, string][]> {
  return pages(c, what, prefix, prefixEnd(prefix));
}

/** Every record under a prefix, parsed; the damaged ones are listed apart. */
async function readAll<T>(c: EtcdConn, prefix: string, parse: (text: string, key: string) => T, damagedRecords: DamagedRecord[]): Promise<T[]> {
  const out: T[] = [];
  for await (const page of prefixPages(c, 'list', prefix)) {
    for (const [k, v] of page) {
      try {
        out.push(parse(v, k));
      } catch (err) {
        damagedRecords.push({ key: k, why: (err as Error).message });
      }
    }
  }
  return out;
}

export async function exists(c: EtcdConn, mac: string): Promise<boolean> {
  return c.call('lookup', () => c.client.get(c.macKey(mac)).exists());
}

/** The lease of a MAC, or null when it is free or its record is damaged. */
export async function getLeaseQuietly(c: EtcdConn, mac: string): Promise<Lease | null> {
  const text = await c.call('lookup', () => c.client.get(c.macKey(mac)).string());
  try {
    return text === null ? null : parseLease(text, c.macKey(mac));
  } catch {
    return null;
  }
}

export function getLease(c: EtcdConn, mac: string): Promise<Lease | null> {
  return getLeaseQuietly(c, formatMac(parseMac(mac)));
}

export async function listLeases(c: EtcdConn): Promise<LeaseList> {
  const damagedRecords: DamagedRecord[] = [];
  const leases = await readAll(c, `${c.prefix}/macs/`, parseLease, damagedRecords);
  const conflicts = await readAll(c, `${c.prefix}/conflicts/`, parseConflict, damagedRecords);
  return { leases: leases.sort(byMac), damaged: damagedRecords, conflicts };
}

/** Every lease a page at a time, in key (MAC) order. */
export async function* leasePages(c: EtcdConn): AsyncGenerator<LeasePage> {
  for await (const page of prefixPages(c, 'list', `${c.prefix}/macs/`)) {
    const out: LeasePage = { leases: [], damaged: [] };
    for (const [k, v] of page) {
      try {
        out.leases.push(parseLease(v, k));
      } catch (err) {
        out.damaged.push({ key: k, why: (err as Error).message });
      }
    }
    yield out;
  }
}

export async function listConflicts(c: EtcdConn): Promise<{ conflicts: Conflict[]; damaged: DamagedRecord[] }> {
  const damaged: DamagedRecord[] = [];
  return { conflicts: await readAll(c, `${c.prefix}/conflicts/`, parseConflict, damaged), damaged };
}

/**
 * Held from the counter keys (etcd-held-count.ts) when they answer, else from one count-only request (etcd counts
 * the keys; none is sent); the split per host is the caller's.
 */
export async function poolStatus(c: EtcdConn, pool: Pool, counted?: number): Promise<PoolStatus> {
  const held = counted ?? (await c.call('count', () => c.client.getAll().prefix(`${c.prefix}/macs/${macHex(pool.prefix)}`).count()));
  const cursor = await readCursor(c, pool);
  return { prefix: pool.prefix, size: pool.size, held, cursor: formatMac(macAt(pool, cursor)) };
}
