/**
 * The host-lease protocol of the etcd store. Every running VM's address key hangs on an etcd lease of its
 * host, kept alive by that host's agent (or by a foreground launcher itself). When the lease is lost (etcd
 * away longer than the TTL, an agent restart), the keys are gone from etcd while the VMs still run: the
 * holder takes a new lease and re-asserts the keys of what runs on the host. A key another host took
 * meanwhile is a conflict: recorded under conflicts/, reported, and never handed out again while it stands.
 */
import type { Etcd3, Lease as EtcdLease } from 'etcd3';
import type { Conflict, Lease } from './store.js';
import { CountDelta } from './etcd-held-count.js';
import { parseLease, serializeLease } from './lease.js';

/** What the protocol needs of the store: its client, its key layout, its error wrapping. */
export interface EtcdAccess {
  client: Etcd3;
  host: string;
  /** The key prefix every key of the store lives under. */
  prefix: string;
  where: string;
  ttlS: number;
  macKey: (mac: string) => string;
  hostKey: (host: string) => string;
  conflictKey: (mac: string) => string;
  /** The host index key of a lease (etcd-host-index.ts): written wherever the lease is, on the same etcd lease. */
  indexKey: (host: string, mac: string) => string;
  call: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
}

export interface ReassertResult {
  /** Keys that were there (re-attached to the new lease) or created again. */
  kept: number;
  recreated: Lease[];
  conflicts: Conflict[];
}

/** What `uncloud-vm agent` uses; it wires signals and output only. */
export interface HostAgent {
  readonly host: string;
  readonly where: string;
  /** Grant a lease with the store's TTL and announce it under hosts/<host> for this host's VMs. */
  takeLease(): Promise<{ id: string; lease: EtcdLease }>;
  /** Put this host's agent key back if it is missing or not this lease's; true when it had to. */
  ensureAnnounced(held: { id: string; lease: EtcdLease }): Promise<Reannounced>;
  /** Hang `expected` (the leases of VMs running on this host) on lease `id`, creating missing keys. */
  reassert(id: string, expected: Lease[]): Promise<ReassertResult>;
  close(): Promise<void>;
}

/**
 * How long a lease grant may take before it is tried again. etcd without a leader drops the proposal, so a
 * grant sent then fails only at its deadline, even once a leader is back; the keys of the lost lease live on
 * for about one TTL after that, and must be on the new lease by then. A quarter of the TTL, 1 to 5 s.
 */
export const grantDeadlineMs = (ttlS: number): number => Math.min(5000, Math.max(1000, ttlS * 250));

export async function announce(a: EtcdAccess): Promise<{ id: string; lease: EtcdLease }> {
  const lease = a.client.lease(a.ttlS, { deadline: Date.now() + grantDeadlineMs(a.ttlS) });
  const id = await a.call('lease grant', () => lease.grant());
  await putHostKey(a, id, lease);
  return { id, lease };
}

async function putHostKey(a: EtcdAccess, id: string, lease: EtcdLease): Promise<void> {
  await a.call('announce', () =>
    lease.put(a.hostKey(a.host)).value(JSON.stringify({ leaseId: id, pid: process.pid, started: new Date().toISOString() })).exec(),
  );
}

/** Put hosts/<host> back if someone deleted or damaged it (units and detached VMs look the agent up there). */
export async function ensureAnnounced(a: EtcdAccess, held: { id: string; lease: EtcdLease }): Promise<Reannounced> {
  const text = await a.call('agent lookup', () => a.client.get(a.hostKey(a.host)).string());
  let why: Reannounced = text === null ? { why: 'missing' } : { why: 'damaged' };
  try {
    const other = text === null ? null : (JSON.parse(text) as { leaseId?: unknown; pid?: unknown; started?: unknown });
    if (other?.leaseId === held.id) return null;
    if (typeof other?.leaseId === 'string' && other.leaseId !== '') {
      why = { why: 'another agent', pid: typeof other.pid === 'number' ? other.pid : null, started: typeof other.started === 'string' ? other.started : null, leaseId: other.leaseId };
    }
  } catch {
    // damaged: written again below
  }
  await putHostKey(a, held.id, held.lease);
  return why;
}

/**
 * Why the host key was written again: it was gone or damaged, or another agent announced the same host since
 * this one's last pass (two agents for one host take its VMs' keys from each other, pass after pass).
 */
export type Reannounced = null | { why: 'missing' | 'damaged' } | { why: 'another agent'; pid: number | null; started: string | null; leaseId: string };

/**
 * Leases per chunk: one transaction reads their keys (or, where the last pass left them known, confirms them),
 * and one writes them: a put each, the count puts (at most 14 for a chunk moved from one etcd lease), and now
 * and then an index key or a conflict to clear (then the write is halved), under etcd's 128 operations.
 */
const CHUNK = 112;
/** etcd's limit on the operations of one list of a transaction (--max-txn-ops). */
const MAX_TXN_OPS = 128;
/** Chunks in flight at once: their round trips overlap, and etcd writes several in one sync of its log. */
const REASSERT_PARALLEL = 24;
/** Index keys one chunk's read returns at most (a host's other leases may lie between its running VMs' MACs). */
const INDEX_READ_LIMIT = 1000;
/** A group that lost a race is written again without the leases that changed, at most this many times. */
const WRITE_TRIES = 3;

/** What one pass left a key as (its revision, the etcd lease it hangs on, its record, whether its index key is on no etcd lease): the next pass only confirms it. */
export interface Asserted {
  mod: string;
  lease: string;
  holder: Lease;
  indexFree: boolean;
}

/**
 * For each expected lease: the key is there and ours (same VM) → attach it to lease `id`; absent → create it
 * (compare: still absent); another VM's → a conflict, recorded and returned. Conflicts that no longer
 * stand (the key is ours again) are cleared. Leases go in chunks of neighbouring MACs, several at once: one
 * transaction reads a chunk's keys (except those `known` from the last pass, which it only compares on their
 * revision; a key that changed meanwhile is read by the same round trip) and this host's index keys between
 * them; then one transaction writes what must change, compared on what was read. A lease whose key changed
 * meanwhile is done again one at a time. `known` is updated to what this pass leaves.
 *
 * A key that moves to lease `id` leaves its host index key where it is when the read saw it on no etcd lease: one
 * put per lease, not two (etcd-host-index.ts). An index key on an etcd lease (as an earlier uncloud-vm wrote
 * them) or missing is put, on no etcd lease, in the transaction that moves its lease key.
 */
export async function reassert(a: EtcdAccess, id: string, expected: Lease[], known = new Map<string, Asserted>()): Promise<ReassertResult> {
  const out: ReassertResult = { kept: 0, recreated: [], conflicts: [] };
  // Conflicts are rare: one read of their range tells which MACs have one to clear. Only those this host
  // recorded: a conflict names a running VM of one host, and only that host can tell it no longer stands (the
  // host whose VM holds the key must leave it, or the record would come and go, the address free in the gaps).
  const recordedHere = (v: string): boolean => {
    try {
      const h = (JSON.parse(v) as { host?: unknown }).host;
      return typeof h !== 'string' || h === a.host;
    } catch {
      return true;
    }
  };
  const standing = new Set(
    Object.entries(await a.call('re-assert', () => a.client.getAll().prefix(a.conflictKey('')).strings()))
      .filter(([, v]) => recordedHere(v))
      .map(([k]) => k.slice(k.lastIndexOf('/') + 1)),
  );
  const before = new Map(known);
  known.clear(); // refilled with what this pass leaves: a VM no longer expected is forgotten
  const ctx: Reasserting = { a, id, out, before, known };
  // Each lease's keys once; in MAC order, so a chunk's index keys lie in one short range of this host's.
  const wants = expected
    .map((lease, pos): Want => {
      const hex = lease.mac.replaceAll(':', '');
      return { lease, pos, hex, num: parseInt(hex, 16), key: Buffer.from(a.macKey(lease.mac)), index: Buffer.from(a.indexKey(a.host, lease.mac)), conflict: standing.has(hex), owners: JSON.stringify(lease.owners) };
    })
    .sort((x, y) => (x.hex < y.hex ? -1 : x.hex > y.hex ? 1 : 0));
  const chunks: Want[][] = [];
  for (let i = 0; i < wants.length; i += CHUNK) chunks.push(wants.slice(i, i + CHUNK));
  const results: { out: ReassertResult; left: Want[] }[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let k = next++; k < chunks.length; k = next++) {
      const mine: ReassertResult = { kept: 0, recreated: [], conflicts: [] };
      results[k] = { out: mine, left: await reassertChunk({ ...ctx, out: mine }, chunks[k]!) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(REASSERT_PARALLEL, chunks.length) }, worker));
  const byPos = (x: Want, y: Want) => x.pos - y.pos;
  const created = new Set(results.flatMap((r) => r.out.recreated));
  out.kept += results.reduce((n, r) => n + r.out.kept, 0);
  out.recreated.push(...wants.filter((w) => created.has(w.lease)).sort(byPos).map((w) => w.lease)); // in the order expected
  // What a chunk could not settle (another writer raced it, or the key is another VM's): one at a time.
  for (const w of results.flatMap((r) => r.left).sort(byPos)) await reassertOne(ctx, w);
  return out;
}

interface Reasserting {
  a: EtcdAccess;
  id: string;
  out: ReassertResult;
  /** What the last pass left, and what this one leaves. */
  before: Map<string, Asserted>;
  known: Map<string, Asserted>;
}

/** An expected lease (at `pos` in what was expected) with its keys as etcd takes them, whether a conflict of it stands, and its owners as JSON. */
interface Want {
  lease: Lease;
  pos: number;
  hex: string;
  /** The MAC as a number. */
  num: number;
  key: Buffer;
  index: Buffer;
  conflict: boolean;
  owners: string;
}

/**
 * A compare: the key's revision is `mod`. As a number (revisions stay far below 2^53): the client parses a
 * 64-bit number given as text digit by digit, a tenth of a pass's time in node.
 */
const modIs = (key: Buffer, mod: string) => ({ key, target: 'Mod' as const, result: 'Equal' as const, mod_revision: Number(mod) });

/** etcd's answer to one range of a transaction. */
type Kv = { mod_revision: string; lease: string; value: Buffer; key: Buffer };
const kvsOf = (r: { response_range?: { kvs: unknown[] } } | undefined): Kv[] => (r?.response_range?.kvs ?? []) as Kv[];

function parseQuietly(text: string, key: string): Lease | null {
  try {
    return parseLease(text, key);
  } catch {
    return null;
  }
}

/**
 * A key as one read (or the last pass) saw it, and whether its index key is on no etcd lease; null: absent.
 * `value`: the record's bytes as read (none for a key the last pass left known).
 */
type Seen = { mod: string; lease: string; holder: Lease | null; indexFree: boolean; value?: Buffer } | null;

/**
 * Neighbouring MACs of a chunk at most this far apart are read with one range: what lies between them (other
 * hosts' leases, manual ones), at most READ_GAP - 1 keys per gap, comes along and is passed over. etcd and the
 * client then handle one operation and one answer for a run of keys instead of one per key.
 */
const READ_GAP = 4;
const ZERO = Buffer.from([0]);

/** The reads of `wants` (in MAC order), a range per run of neighbours and a get for one alone; `found` gives each want's key from the answers (undefined: absent). */
function keyReads(wants: Want[]): { ops: { request_range: { key: Buffer; range_end?: Buffer } }[]; found: (responses: unknown[]) => (Kv | undefined)[] } {
  const runs: [number, number][] = [];
  wants.forEach((w, i) => {
    const last = runs.at(-1);
    if (last && w.num - wants[last[1]]!.num <= READ_GAP) last[1] = i;
    else runs.push([i, i]);
  });
  const ops = runs.map(([s, e]) => ({ request_range: s === e ? { key: wants[s]!.key } : { key: wants[s]!.key, range_end: Buffer.concat([wants[e]!.key, ZERO]) } }));
  const found = (responses: unknown[]): (Kv | undefined)[] => {
    const out: (Kv | undefined)[] = [];
    runs.forEach(([s, e], k) => {
      // Keys come in etcd's order (by their bytes), as the wants are.
      const kvs = kvsOf(responses[k] as Parameters<typeof kvsOf>[0]);
      let j = 0;
      for (let i = s; i <= e; i++) {
        const key = wants[i]!.key;
        while (j < kvs.length && Buffer.compare(kvs[j]!.key, key) < 0) j++;
        out.push(j < kvs.length && kvs[j]!.key.equals(key) ? kvs[j] : undefined);
      }
    });
    return out;
  };
  return { ops, found };
}

/**
 * The keys of a chunk (those known from the last pass compared on their revision, the rest read) and, when
 * any is read, this host's index keys from its first MAC to its last (their etcd leases), in one round trip.
 */
async function readChunk(c: Reasserting, chunk: Want[]): Promise<Seen[]> {
  const { a } = c;
  const known = chunk.map((w) => c.before.get(w.lease.mac));
  const indexRange = { request_range: { key: chunk[0]!.index, range_end: Buffer.concat([chunk.at(-1)!.index, ZERO]), keys_only: true, limit: INDEX_READ_LIMIT } };
  const unknown = chunk.filter((_, i) => !known[i]);
  const every = keyReads(chunk);
  const some = unknown.length === chunk.length ? every : keyReads(unknown);
  // The compares: each known key unchanged since the last pass (none: the transaction is a batch of reads).
  const r = await a.call('re-assert', () =>
    a.client.kv.txn({
      compare: chunk.flatMap((w, i) => (known[i] ? [modIs(w.key, known[i]!.mod)] : [])),
      success: unknown.length > 0 ? [...some.ops, indexRange] : [],
      failure: [...every.ops, indexRange],
    }),
  );
  // An index key not in the range (missing, or past its limit) is put with its lease key: as if on an etcd lease.
  const free = new Set<string>();
  for (const kv of kvsOf(r.responses.at(-1))) if (String(kv.lease) === '0') free.add(kv.key.toString().slice(-12));
  const seen = (kv: Kv | undefined, w: Want): Seen =>
    kv ? { mod: String(kv.mod_revision), lease: String(kv.lease), holder: parseQuietly(kv.value.toString(), kv.key.toString()), indexFree: free.has(w.hex), value: kv.value } : null;
  if (!r.succeeded) {
    const kvs = every.found(r.responses);
    return chunk.map((w, i) => seen(kvs[i], w));
  }
  const kvs = some.found(r.responses);
  let u = 0;
  return chunk.map((w, i) => (known[i] ? { ...known[i]! } : seen(kvs[u++], w)));
}

/** Ours or absent keys of a chunk, read once and written in one transaction (or as few as fit); returns the leases left for one by one. */
async function reassertChunk(c: Reasserting, chunk: Want[]): Promise<Want[]> {
  const { a, id } = c;
  const state = await readChunk(c, chunk);
  const left: Want[] = [];
  const writes: Write[] = [];
  chunk.forEach((w, i) => {
    const kv = state[i]!;
    if (!kv) {
      writes.push({ w, from: null, next: w.lease, putIndex: true });
      return;
    }
    const holder = kv.holder;
    if (!holder || holder.host !== a.host || holder.vm?.uuid !== w.lease.vm?.uuid) left.push(w);
    // Already on this lease with these owners (the periodic pass, mostly): nothing to write.
    else if (kv.lease === id && JSON.stringify(holder.owners) === w.owners && !w.conflict) {
      c.out.kept += 1;
      c.known.set(w.lease.mac, { mod: kv.mod, lease: kv.lease, holder, indexFree: kv.indexFree });
    } else writes.push({ w, from: { mod: kv.mod, lease: kv.lease, holder, value: kv.value }, next: { ...holder, owners: w.lease.owners }, putIndex: !kv.indexFree });
  });
  return writes.length > 0 ? [...left, ...(await writeGroup(c, writes))] : left;
}

/** A key to write: absent (from null) or ours as read, the record it gets, and whether its index key is put (on no etcd lease). */
type Write = { w: Want; from: { mod: string; lease: string; holder: Lease; value?: Buffer | undefined } | null; next: Lease; putIndex: boolean };

/**
 * One transaction for a group of writes (halved until it fits etcd's limit), each compared on what was read;
 * returns the leases whose key changed meanwhile (its failure branch reads them: the others go again).
 */
async function writeGroup(c: Reasserting, group: Write[], tries = WRITE_TRIES): Promise<Want[]> {
  const { a, id } = c;
  const count = new CountDelta();
  const ops = group.flatMap(({ w, from, next, putIndex }) => {
    if (from) count.move(w.lease.mac, { host: from.holder.host, lease: from.lease }, { host: a.host, lease: id });
    else count.add(w.lease.mac, a.host, id, 1);
    // A record that stays as it is goes back as the bytes read (etcd then reads nothing for the put: cheaper for
    // it than ignore_value, which the put of a key the last pass left known still uses).
    const same = from !== null && JSON.stringify(from.holder.owners) === w.owners;
    return [
      { request_put: { key: w.key, lease: id, ...(!same ? { value: Buffer.from(serializeLease(next)) } : from.value ? { value: from.value } : { ignore_value: true }) } },
      ...(putIndex ? [{ request_put: { key: w.index, value: Buffer.alloc(0) } }] : []),
      ...(w.conflict ? [{ request_delete_range: { key: Buffer.from(a.conflictKey(w.lease.mac)) } }] : []),
    ];
  });
  const all = [...ops, ...count.ops(a)];
  if (all.length > MAX_TXN_OPS && group.length > 1) {
    const half = Math.ceil(group.length / 2);
    return (await Promise.all([writeGroup(c, group.slice(0, half), tries), writeGroup(c, group.slice(half), tries)])).flat();
  }
  const r = await a.call('re-assert', () =>
    a.client.kv.txn({
      compare: group.map((x) =>
        x.from === null ? { key: x.w.key, target: 'Create' as const, result: 'Equal' as const, create_revision: 0 } : modIs(x.w.key, x.from.mod),
      ),
      success: all,
      failure: group.map((x) => ({ request_range: { key: x.w.key, keys_only: true } })),
    }),
  );
  if (!r.succeeded) {
    const lost: Want[] = [];
    const again: Write[] = [];
    group.forEach((x, i) => {
      const kv = kvsOf(r.responses[i])[0];
      if (x.from === null ? kv !== undefined : kv === undefined || String(kv.mod_revision) !== x.from.mod) lost.push(x.w);
      else again.push(x);
    });
    if (again.length > 0 && tries > 1) lost.push(...(await writeGroup(c, again, tries - 1)));
    else lost.push(...again.map((x) => x.w));
    return lost;
  }
  const mod = String(r.header.revision);
  for (const x of group) c.known.set(x.w.lease.mac, { mod, lease: id, holder: x.next, indexFree: true });
  c.out.kept += group.length;
  c.out.recreated.push(...group.filter((x) => x.from === null).map((x) => x.w.lease));
  return [];
}

/** One lease, as the chunk would do it; a key that changed under us is read again, a few times. */
async function reassertOne(c: Reasserting, w: Want, tries = 3): Promise<void> {
  const { a, out } = c;
  const want = w.lease;
  const key = a.macKey(want.mac);
  const kv = (await a.call('re-assert', () => a.client.get(key).exec())).kvs[0];
  const holder = kv ? parseQuietly(kv.value.toString(), key) : null;
  const ours = !!kv && !!holder && holder.host === a.host && holder.vm?.uuid === want.vm?.uuid;
  if (kv && holder && ours) {
    if (String(kv.lease) === c.id && JSON.stringify(holder.owners) === w.owners) {
      if (w.conflict) await a.call('re-assert', () => a.client.delete().key(a.conflictKey(want.mac)).exec());
      c.known.set(want.mac, { mod: String(kv.mod_revision), lease: c.id, holder, indexFree: false });
      out.kept += 1;
      return;
    }
    // Its index key was not read: put with the lease key, on no etcd lease.
    if ((await writeGroup(c, [{ w, from: { mod: String(kv.mod_revision), lease: String(kv.lease), holder, value: kv.value }, next: { ...holder, owners: want.owners }, putIndex: true }])).length === 0) return;
  } else if (!kv && (await writeGroup(c, [{ w, from: null, next: want, putIndex: true }])).length === 0) return;
  if ((ours || !kv) && tries > 1) {
    await reassertOne(c, w, tries - 1);
    return;
  }
  const again = await a.call('re-assert', () => a.client.get(key).string());
  const conflict: Conflict = { version: 1, mac: want.mac, host: a.host, vm: want.vm ?? { name: '?' }, holder: again === null ? null : parseQuietly(again, key), detected: new Date().toISOString() };
  await a.call('recording a conflict', () => a.client.put(a.conflictKey(want.mac)).value(JSON.stringify(conflict)).exec());
  out.conflicts.push(conflict);
}
