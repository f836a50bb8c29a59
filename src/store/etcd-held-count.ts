/**
 * The etcd store's held count: `mac pool` reads a few counter keys instead of making etcd walk every lease key.
 *
 * etcd has no increment, and a counter read, changed and written back would make every allocation race for it.
 * A put does increment one thing atomically, without a compare: the key's version (puts since it was created).
 * So a count is kept in the versions of counter keys, one set per (group of 3 octets, host, etcd lease):
 *
 *   <prefix>/counts/<6 hex>/<host>/<etcd lease or 0>/+<b>   each put adds 2^b (b = 0..6)
 *   <prefix>/counts/<6 hex>/<host>/<etcd lease or 0>/-<b>   each put takes 2^b away
 *   <prefix>/counts/<6 hex>/<host>/<etcd lease or 0>/base   a number added once (a store counted late, see below)
 *
 * Every transaction that creates, deletes or moves a lease key puts the counter keys of what it changed (a
 * transaction that adds 5 puts +0 and +2): a kill cannot split it, and racing writers never fail on a counter.
 * The counter keys of an etcd lease hang on that lease, like the lease keys they count, so when a host's lease
 * expires (no transaction at all) its keys and their count vanish together. A key moved to another etcd lease
 * (re-assert, setOwners) is taken off the old lease's count and added to the new one's in the same transaction.
 *
 * <prefix>/counts-complete says every lease key is counted. A store written before (or by a writer that did not count)
 * has none: readers count the lease keys themselves, and the first gc counts what is there at one revision R
 * and adds the difference to each `base` (compared on the base's revision at R, so racing builders do it once).
 * Every write after R counts itself, so the difference taken at R stays right. A count that cannot be right
 * (a counter key of an unknown form, a host below zero) is not trusted: readers count the lease keys instead.
 * A count changed by hand (a counter key put again or deleted, keys copied by `etcdctl make-mirror`) is found
 * by its host's next gc, which compares it with the lease keys it reads through its index, and set right the
 * same way (checkHostCount).
 */
import type { IKeyValue, IRequestOp } from 'etcd3';
import { UncloudError } from '../core/errors.js';
import type { EtcdConn } from './etcd-client.js';
import { kvPages } from './etcd-read.js';
import { parseLease } from './lease.js';

/** Hex digits of a MAC that name its counter group: pools of up to 3 octets (the default 42:00:00) are counted. */
export const GROUP_HEX = 6;
/** Where damaged lease records are counted (no host can be read from them); `mac pool` shows them under it. */
export const DAMAGED_HOST = 'damaged records';
/** Weights 2^0..2^6: a transaction changes a count by at most 127. */
const BITS = 7;

const markerKey = (c: { prefix: string }) => `${c.prefix}/counts-complete`;
const countsRoot = (c: { prefix: string }) => `${c.prefix}/counts/`;
/** The group of a MAC (as formatMac writes it): its first 3 octets, as hex. */
const groupOf = (mac: string) => mac.slice(0, 8).replaceAll(':', '');
const countPrefix = (c: { prefix: string }, group: string, host: string, lease: string) => `${countsRoot(c)}${group}/${host}/${lease}/`;

/** Changes to counts made by one transaction, per (group, host, etcd lease); its puts come from ops(). */
export class CountDelta {
  private readonly by = new Map<string, { group: string; host: string; lease: string; n: number }>();

  /** One lease key of `mac`, of `host`, on etcd lease `lease` ('0' or undefined: none), created (+1) or deleted (-1). */
  add(mac: string, host: string, lease: string | undefined, n: 1 | -1): this {
    const id = { group: groupOf(mac), host, lease: lease ?? '0' };
    const k = `${id.group}/${id.host}/${id.lease}`;
    const had = this.by.get(k);
    if (had) had.n += n;
    else this.by.set(k, { ...id, n });
    return this;
  }

  /** A lease key that moves from one (host, etcd lease) to another: counted off one and onto the other. */
  move(mac: string, from: { host: string; lease: string | undefined }, to: { host: string; lease: string | undefined }): this {
    if (from.host === to.host && (from.lease ?? '0') === (to.lease ?? '0')) return this;
    return this.add(mac, from.host, from.lease, -1).add(mac, to.host, to.lease, 1);
  }

  /** The counter puts, one per set bit of each change, each on its counter's etcd lease. */
  ops(c: { prefix: string }): IRequestOp[] {
    const out: IRequestOp[] = [];
    for (const { group, host, lease, n } of this.by.values()) {
      const size = Math.abs(n);
      if (size >= 2 ** BITS) throw new Error(`a count changed by ${n} in one transaction (at most ${2 ** BITS - 1})`);
      for (let b = 0; b < BITS; b++) {
        if (!(size & (1 << b))) continue;
        const key = Buffer.from(`${countPrefix(c, group, host, lease)}${n > 0 ? '+' : '-'}${b}`);
        out.push({ request_put: lease === '0' ? { key, value: Buffer.alloc(0) } : { key, value: Buffer.alloc(0), lease } });
      }
    }
    return out;
  }
}

/**
 * What counter keys say, per identity ("group/host/lease"), and each base key as read. A key of another form
 * (or a base that is no number) is left out, and the answer is false.
 */
function tally(c: { prefix: string }, kvs: IKeyValue[], into: Map<string, number>, bases?: Map<string, IKeyValue>, hangs?: Map<string, string>): boolean {
  const root = countsRoot(c);
  let whole = true;
  for (const kv of kvs) {
    const key = kv.key.toString();
    const m = /^([0-9a-f]{6})\/([^/]+)\/(\d+)\/(?:([+-])([0-6])|base)$/.exec(key.slice(root.length));
    const text = kv.value.toString();
    if (!key.startsWith(root) || !m || (m[4] === undefined && !/^-?\d{1,9}$/.test(text))) {
      whole = false;
      continue;
    }
    const id = `${m[1]}/${m[2]}/${m[3]}`;
    if (m[4] === undefined) bases?.set(id, kv);
    hangs?.set(id, String(kv.lease));
    const n = m[4] === undefined ? Number(text) : (m[4] === '+' ? 1 : -1) * Number(kv.version) * 2 ** Number(m[5]);
    into.set(id, (into.get(id) ?? 0) + n);
  }
  return whole;
}

/** Why the counter keys cannot answer: not counted yet, a key of another form, a host below zero. */
export type Uncounted = 'not counted' | 'damaged key' | 'below zero';

/**
 * Held under a pool prefix (hex), in all and per host, from the counter keys; why not, when they cannot answer
 * (then count the keys). A prefix longer than a group is never counted here.
 */
export async function countedHeld(c: EtcdConn, prefixHex: string): Promise<{ held: number; byHost: Record<string, number> } | Uncounted> {
  if (prefixHex.length > GROUP_HEX) return 'not counted';
  if (!(await countsComplete(c)) && !(await markIfEmpty(c))) return 'not counted';
  const ids = new Map<string, number>();
  let whole = true;
  for await (const page of kvPages(c, 'count', `${countsRoot(c)}${prefixHex}`)) whole = tally(c, page, ids) && whole;
  if (!whole) return 'damaged key';
  const byHost: Record<string, number> = {};
  let held = 0;
  for (const [id, n] of ids) {
    const host = id.split('/')[1]!;
    byHost[host] = (byHost[host] ?? 0) + n;
    held += n;
  }
  for (const [host, n] of Object.entries(byHost)) {
    if (n < 0) return 'below zero';
    if (n === 0) delete byHost[host];
  }
  return { held, byHost };
}

/**
 * gc counts the store again when it is not counted yet, or when a count went below zero (a lease record damaged
 * by hand after it was counted, then released: counted under its host, taken off DAMAGED_HOST). A key of another
 * form is not ours to remove: until someone does, mac pool counts the keys.
 */
export async function countIfNeeded(c: EtcdConn): Promise<void> {
  if (!(await countsComplete(c)) || (await countedHeld(c, '')) === 'below zero') await buildCounts(c);
}

export async function countsComplete(c: EtcdConn): Promise<boolean> {
  return c.call('count', () => c.client.get(markerKey(c)).exists());
}

/** A store with no lease key and no counter key yet is counted from here on (every writer counts): mark it so. */
async function markIfEmpty(c: EtcdConn): Promise<boolean> {
  const one = (prefix: string) => c.client.getAll().prefix(prefix).limit(1).keys();
  const [leases, counts] = await c.call('count', () => Promise.all([one(`${c.prefix}/macs/`), one(countsRoot(c))]));
  if (leases.length > 0 || counts.length > 0) return false;
  await c.call('count', () => c.client.put(markerKey(c)).value('1').exec());
  return true;
}

/**
 * Count a store written before the counts (or after a writer that did not count): at one revision, the lease
 * keys per (group, host, etcd lease) against what the counters say; the difference goes into each base,
 * compared on that base's revision. If another writer changed a base meanwhile, it starts again.
 */
export async function buildCounts(c: EtcdConn, tries = 5): Promise<void> {
  for (let t = 0; t < tries; t++) {
    const revision = (await c.call('count build', () => c.client.get(markerKey(c)).exec())).header.revision;
    const exact = new Map<string, number>();
    for await (const page of kvPages(c, 'count build', `${c.prefix}/macs/`, revision)) {
      for (const kv of page) {
        const key = kv.key.toString();
        let host = DAMAGED_HOST; // the same for every host that counts, and for release
        try {
          host = parseLease(kv.value.toString(), key).host;
        } catch {
          // damaged
        }
        const id = `${key.slice(key.lastIndexOf('/') + 1).slice(0, GROUP_HEX)}/${host}/${String(kv.lease)}`;
        exact.set(id, (exact.get(id) ?? 0) + 1);
      }
    }
    if (!(await settle(c, 'count build', revision, exact, () => true))) {
      await c.call('count build', () => c.client.put(markerKey(c)).value('1').exec());
      return;
    }
  }
  throw contention(c, tries);
}

const contention = (c: EtcdConn, tries: number) =>
  new UncloudError('ETCD_CONTENTION', `${c.where}: counting the held addresses lost ${tries} races with other hosts counting them; run gc again`);

/**
 * Make the counts of the identities `mine` picks say `exact` (what the lease keys said at `revision`): the
 * difference goes into each base, compared on that base's revision at `revision`, on the etcd lease its
 * counter keys hang on (none for keys copied without their lease, as `etcdctl make-mirror` copies them).
 * Every write after `revision` counts itself, so the difference stays right. True if another writer changed a
 * base meanwhile (then read again and start over).
 */
async function settle(c: EtcdConn, what: string, revision: string, exact: Map<string, number>, mine: (id: string) => boolean): Promise<boolean> {
  const counted = new Map<string, number>();
  const bases = new Map<string, IKeyValue>();
  const hangs = new Map<string, string>();
  for await (const page of kvPages(c, what, countsRoot(c), revision)) tally(c, page, counted, bases, hangs);
  let raced = false;
  for (const id of new Set([...exact.keys(), ...counted.keys()])) {
    const diff = (exact.get(id) ?? 0) - (counted.get(id) ?? 0);
    if (diff === 0 || !mine(id)) continue;
    const [group, host, lease] = id.split('/') as [string, string, string];
    const key = `${countPrefix(c, group, host, lease)}base`;
    const was = bases.get(id);
    const on = hangs.get(id) ?? lease;
    const value = String((was ? Number(was.value.toString()) : 0) + diff);
    const put = c.client.put(key).value(value);
    try {
      const r = await c.call(what, () => c.client.if(key, 'Mod', '==', was ? String(was.mod_revision) : 0).then(on === '0' ? put : put.lease(on)).commit());
      raced ||= !r.succeeded;
    } catch (err) {
      // The etcd lease expired meanwhile: its keys and their count went with it.
      if (!/lease not found/i.test((err as Error).message)) throw err;
    }
  }
  return raced;
}

/**
 * gc's check of this host's count against its lease keys, read through its index at one revision (gc reads
 * them anyway, so the check costs this host's VMs, not the pool): a count changed by hand (a counter key put
 * again or deleted, or every key copied once by `etcdctl make-mirror`) makes `mac pool` wrong and is set right.
 * A damaged lease key in this host's index may be counted under this host or under DAMAGED_HOST: when the
 * count disagrees then, only a count of the whole store can tell, so gc counts it all (rare: damage by hand).
 * When another host's gc or count build changed a base meanwhile, this host's keys are read again.
 */
export async function checkHostCount(c: EtcdConn, first: HostKeysAt, reread: () => Promise<HostKeysAt>, tries = 5): Promise<void> {
  let at = first;
  for (let t = 0; t < tries; t++) {
    const exact = new Map<string, number>();
    let damaged = false;
    for (const { kv } of at.keys) {
      if (!kv) continue;
      const key = kv.key.toString();
      let host: string;
      try {
        host = parseLease(kv.value.toString(), key).host;
      } catch {
        damaged = true;
        continue;
      }
      if (host !== c.host) continue;
      const id = `${key.slice(key.lastIndexOf('/') + 1).slice(0, GROUP_HEX)}/${host}/${String(kv.lease)}`;
      exact.set(id, (exact.get(id) ?? 0) + 1);
    }
    const mine = (id: string) => id.split('/')[1] === c.host;
    if (damaged) {
      if (!(await agrees(c, at.revision, exact, mine))) await buildCounts(c);
      return;
    }
    if (!(await settle(c, 'count check', at.revision, exact, mine))) return;
    at = await reread();
  }
  throw contention(c, tries);
}

/** This host's lease keys (undefined: gone), as they were at one revision. */
export interface HostKeysAt {
  revision: string;
  keys: { kv: IKeyValue | undefined }[];
}

/** Whether the counts of the identities `mine` picks say what `exact` says, at `revision` (per host). */
async function agrees(c: EtcdConn, revision: string, exact: Map<string, number>, mine: (id: string) => boolean): Promise<boolean> {
  const counted = new Map<string, number>();
  for await (const page of kvPages(c, 'count check', countsRoot(c), revision)) tally(c, page, counted);
  const sum = (m: Map<string, number>) => [...m].filter(([id]) => mine(id)).reduce((n, [, k]) => n + k, 0);
  return sum(counted) === sum(exact);
}
