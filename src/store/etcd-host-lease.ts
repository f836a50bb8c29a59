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

/** Leases whose state one transaction reads (or, where the last pass left them known, confirms): its compares and reads stay under etcd's 128. */
const STATE_CHUNK = 120;
/** Leases written per transaction: two puts each, a conflict to clear now and then, and the count puts, under etcd's 128 operations. */
const WRITE_CHUNK = 56;
/** etcd's limit on the operations of one transaction (--max-txn-ops). */
const MAX_TXN_OPS = 128;
/** Chunks in flight at once: their round trips overlap, so 10,000 leases take well under a second. */
const REASSERT_PARALLEL = 12;

/** What one pass left a key as (its revision, the etcd lease it hangs on, its record): the next pass only confirms it. */
export interface Asserted {
  mod: string;
  lease: string;
  holder: Lease;
}

/**
 * For each expected lease: the key is there and ours (same VM) → attach it to lease `id`; absent → create it
 * (compare: still absent); another VM's → a conflict, recorded and returned. Conflicts that no longer
 * stand (the key is ours again) are cleared. Leases go in chunks, several at once: one transaction reads a
 * chunk's keys, except those `known` from the last pass, which it only compares on their revision (a key that
 * changed meanwhile is read by the same round trip); then the keys to write go in as few transactions as fit,
 * each compared on what was read. A write that loses a race to another writer is done again one lease at a time.
 * `known` is updated to what this pass leaves.
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
  const ctx: Reasserting = { a, id, out, standing, before, known };
  const chunks: Lease[][] = [];
  for (let i = 0; i < expected.length; i += STATE_CHUNK) chunks.push(expected.slice(i, i + STATE_CHUNK));
  // Each chunk's results in its own place, so they come out in the order expected, whatever order chunks end in.
  const results: { out: ReassertResult; left: Lease[] }[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let k = next++; k < chunks.length; k = next++) {
      const mine: ReassertResult = { kept: 0, recreated: [], conflicts: [] };
      results[k] = { out: mine, left: await reassertChunk({ ...ctx, out: mine }, chunks[k]!) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(REASSERT_PARALLEL, chunks.length) }, worker));
  for (const r of results) {
    out.kept += r.out.kept;
    out.recreated.push(...r.out.recreated);
  }
  // What a chunk could not settle (another writer raced it, or the key is another VM's): one at a time.
  for (const r of results) for (const want of r.left) await reassertOne(ctx, want);
  return out;
}

interface Reasserting {
  a: EtcdAccess;
  id: string;
  out: ReassertResult;
  /** MACs (12 hex) with a conflict this host recorded. */
  standing: Set<string>;
  /** What the last pass left, and what this one leaves. */
  before: Map<string, Asserted>;
  known: Map<string, Asserted>;
}

const sameOwners = (x: Lease, y: Lease) => JSON.stringify(x.owners) === JSON.stringify(y.owners);
const hasConflict = (c: Reasserting, mac: string) => c.standing.has(mac.replaceAll(':', ''));

function parseQuietly(text: string, key: string): Lease | null {
  try {
    return parseLease(text, key);
  } catch {
    return null;
  }
}

/** A key as one read (or the last pass) saw it; null: absent. */
type Seen = { mod: string; lease: string; holder: Lease | null } | null;

/** The keys of a chunk: those known from the last pass compared on their revision, the rest read, in one round trip. */
async function readChunk(c: Reasserting, chunk: Lease[]): Promise<Seen[]> {
  const { a } = c;
  const known = chunk.map((w) => c.before.get(w.mac));
  const unknown = chunk.filter((_, i) => !known[i]);
  const seen = (kv: { mod_revision: string; lease: string; value: Buffer; key: Buffer } | undefined): Seen =>
    kv ? { mod: String(kv.mod_revision), lease: String(kv.lease), holder: parseQuietly(kv.value.toString(), kv.key.toString()) } : null;
  // The compares: each known key unchanged since the last pass (none: a compare that always holds).
  const cmps = chunk.flatMap((w, i): [string, 'Mod', '==', string][] => (known[i] ? [[a.macKey(w.mac), 'Mod', '==', known[i]!.mod]] : []));
  const [first, ...rest] = cmps;
  let txn = first ? a.client.if(...first) : a.client.if(a.hostKey(a.host), 'Create', '!=', -1);
  for (const cmp of rest) txn = txn.and(...cmp);
  const r = await a.call('re-assert', () =>
    txn
      .then(...unknown.map((w) => a.client.get(a.macKey(w.mac))))
      .else(...chunk.map((w) => a.client.get(a.macKey(w.mac))))
      .commit(),
  );
  const kvs = r.responses.map((x) => x.response_range.kvs[0]);
  if (!r.succeeded) return kvs.map(seen);
  let u = 0;
  return chunk.map((_, i) => (known[i] ? { mod: known[i]!.mod, lease: known[i]!.lease, holder: known[i]!.holder } : seen(kvs[u++])));
}

/** Ours or absent keys of a chunk, read once and written in as few transactions as fit; returns the leases left for one by one. */
async function reassertChunk(c: Reasserting, chunk: Lease[]): Promise<Lease[]> {
  const { a, id } = c;
  const state = await readChunk(c, chunk);
  const left: Lease[] = [];
  const writes: Write[] = [];
  chunk.forEach((want, i) => {
    const kv = state[i]!;
    if (!kv) {
      writes.push({ want, from: null, next: want });
      return;
    }
    const holder = kv.holder;
    if (!holder || holder.host !== a.host || holder.vm?.uuid !== want.vm?.uuid) left.push(want);
    // Already on this lease with these owners (the periodic pass, mostly): nothing to write.
    else if (kv.lease === id && sameOwners(holder, want) && !hasConflict(c, want.mac)) {
      c.out.kept += 1;
      c.known.set(want.mac, { mod: kv.mod, lease: kv.lease, holder });
    } else writes.push({ want, from: { mod: kv.mod, lease: kv.lease, holder }, next: { ...holder, owners: want.owners } });
  });
  // As few transactions as fit, of even size.
  const size = Math.ceil(writes.length / Math.ceil(writes.length / WRITE_CHUNK));
  const groups: Write[][] = [];
  for (let i = 0; i < writes.length; i += size) groups.push(writes.slice(i, i + size));
  const lost = await Promise.all(groups.map((g) => writeGroup(c, g)));
  return [...left, ...lost.flat()];
}

/** A key to write: absent (from null) or ours as read, and the record it gets. */
type Write = { want: Lease; from: { mod: string; lease: string; holder: Lease } | null; next: Lease };

/** One transaction for a group of writes (halved until it fits etcd's limit); returns the leases of a group that lost a race. */
async function writeGroup(c: Reasserting, group: Write[]): Promise<Lease[]> {
  const { a, id } = c;
  const count = new CountDelta();
  const ops = group.flatMap((w) => {
    const key = a.macKey(w.want.mac);
    if (w.from) count.move(w.want.mac, { host: w.from.holder.host, lease: w.from.lease }, { host: a.host, lease: id });
    else count.add(w.want.mac, a.host, id, 1);
    // A record that stays as it is goes by its etcd lease alone (no need to send it again).
    const same = w.from !== null && sameOwners(w.from.holder, w.next);
    return [
      same ? { request_put: { key: Buffer.from(key), lease: id, ignore_value: true } } : a.client.put(key).value(serializeLease(w.next)).lease(id),
      a.client.put(a.indexKey(a.host, w.want.mac)).value('').lease(id),
      ...(hasConflict(c, w.want.mac) ? [a.client.delete().key(a.conflictKey(w.want.mac))] : []),
    ];
  });
  const all = [...ops, ...count.ops(a)];
  if (all.length > MAX_TXN_OPS && group.length > 1) {
    const half = Math.ceil(group.length / 2);
    return (await Promise.all([writeGroup(c, group.slice(0, half)), writeGroup(c, group.slice(half))])).flat();
  }
  const cmp = (w: Write): [string, 'Mod' | 'Create', '==', string | number] => (w.from === null ? [a.macKey(w.want.mac), 'Create', '==', 0] : [a.macKey(w.want.mac), 'Mod', '==', w.from.mod]);
  const [first, ...rest] = group;
  let txn = a.client.if(...cmp(first!));
  for (const w of rest) txn = txn.and(...cmp(w));
  const r = await a.call('re-assert', () => txn.then(...all).commit());
  if (!r.succeeded) return group.map((w) => w.want);
  const mod = String(r.header.revision);
  for (const w of group) c.known.set(w.want.mac, { mod, lease: id, holder: w.next });
  c.out.kept += group.length;
  c.out.recreated.push(...group.filter((w) => w.from === null).map((w) => w.want));
  return [];
}

/** One lease, as the chunk would do it; a key that changed under us is read again, a few times. */
async function reassertOne(c: Reasserting, want: Lease, tries = 3): Promise<void> {
  const { a, out } = c;
  const key = a.macKey(want.mac);
  const kv = (await a.call('re-assert', () => a.client.get(key).exec())).kvs[0];
  const holder = kv ? parseQuietly(kv.value.toString(), key) : null;
  const ours = !!kv && !!holder && holder.host === a.host && holder.vm?.uuid === want.vm?.uuid;
  if (kv && holder && ours) {
    if (String(kv.lease) === c.id && sameOwners(holder, want)) {
      if (hasConflict(c, want.mac)) await a.call('re-assert', () => a.client.delete().key(a.conflictKey(want.mac)).exec());
      c.known.set(want.mac, { mod: String(kv.mod_revision), lease: c.id, holder });
      out.kept += 1;
      return;
    }
    if ((await writeGroup(c, [{ want, from: { mod: String(kv.mod_revision), lease: String(kv.lease), holder }, next: { ...holder, owners: want.owners } }])).length === 0) return;
  } else if (!kv && (await writeGroup(c, [{ want, from: null, next: want }])).length === 0) return;
  if ((ours || !kv) && tries > 1) {
    await reassertOne(c, want, tries - 1);
    return;
  }
  const again = await a.call('re-assert', () => a.client.get(key).string());
  const conflict: Conflict = { version: 1, mac: want.mac, host: a.host, vm: want.vm ?? { name: '?' }, holder: again === null ? null : parseQuietly(again, key), detected: new Date().toISOString() };
  await a.call('recording a conflict', () => a.client.put(a.conflictKey(want.mac)).value(JSON.stringify(conflict)).exec());
  out.conflicts.push(conflict);
}
