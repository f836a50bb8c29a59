/**
 * The host-lease protocol of the etcd store. Every running VM's address key hangs on an etcd lease of its
 * host, kept alive by that host's agent (or by a foreground launcher itself). When the lease is lost (etcd
 * away longer than the TTL, an agent restart), the keys are gone from etcd while the VMs still run: the
 * holder takes a new lease and re-asserts the keys of what runs on the host. A key another host took
 * meanwhile is a conflict: recorded under conflicts/, reported, and never handed out again while it stands.
 */
import type { Etcd3, Lease as EtcdLease } from 'etcd3';
import type { Conflict, Lease } from './store.js';
import { parseLease, serializeLease } from './lease.js';

/** What the protocol needs of the store: its client, its key layout, its error wrapping. */
export interface EtcdAccess {
  client: Etcd3;
  host: string;
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
  ensureAnnounced(held: { id: string; lease: EtcdLease }): Promise<boolean>;
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
export async function ensureAnnounced(a: EtcdAccess, held: { id: string; lease: EtcdLease }): Promise<boolean> {
  const text = await a.call('agent lookup', () => a.client.get(a.hostKey(a.host)).string());
  try {
    if (text !== null && (JSON.parse(text) as { leaseId?: unknown }).leaseId === held.id) return false;
  } catch {
    // damaged: written again below
  }
  await putHostKey(a, held.id, held.lease);
  return true;
}

/** Leases re-asserted per transaction pair (one read, one write): 40 compares and up to 120 operations (lease, its host index key, a conflict to clear), under etcd's 128. */
const REASSERT_CHUNK = 40;
/** Chunks in flight at once: a chunk's two round trips overlap with others', so 10,000 leases take well under a second. */
const REASSERT_PARALLEL = 8;

/**
 * For each expected lease: the key is there and ours (same VM) → attach it to lease `id`; absent → create it
 * (compare: still absent); another VM's → a conflict, recorded and returned. Conflicts that no longer
 * stand (the key is ours again) are cleared. Leases go in chunks of one read and one transaction, several chunks
 * at once (10,000 in a few hundred round trips, overlapped); a chunk that loses a race to another writer is done
 * again one lease at a time.
 */
export async function reassert(a: EtcdAccess, id: string, expected: Lease[]): Promise<ReassertResult> {
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
  const ctx: Reasserting = { a, id, out, standing };
  const chunks: Lease[][] = [];
  for (let i = 0; i < expected.length; i += REASSERT_CHUNK) chunks.push(expected.slice(i, i + REASSERT_CHUNK));
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

/** Ours or absent keys of a chunk in one read and one transaction; returns the leases left for one by one. */
async function reassertChunk(c: Reasserting, chunk: Lease[]): Promise<Lease[]> {
  const { a, id } = c;
  // A compare that always holds (no key has create revision -1): the transaction is a batch of reads.
  const read = await a.call('re-assert', () =>
    a.client.if(a.hostKey(a.host), 'Create', '!=', -1).then(...chunk.map((w) => a.client.get(a.macKey(w.mac)))).commit(),
  );
  const left: Lease[] = [];
  const writes: { want: Lease; mod: string | null; next: Lease }[] = [];
  let unchanged = 0;
  chunk.forEach((want, i) => {
    const kv = read.responses[i]?.response_range.kvs[0];
    if (!kv) {
      writes.push({ want, mod: null, next: want });
      return;
    }
    const holder = parseQuietly(kv.value.toString(), a.macKey(want.mac));
    if (!holder || holder.host !== a.host || holder.vm?.uuid !== want.vm?.uuid) left.push(want);
    // Already on this lease with these owners (the periodic pass, mostly): nothing to write.
    else if (String(kv.lease) === id && sameOwners(holder, want) && !hasConflict(c, want.mac)) unchanged += 1;
    else writes.push({ want, mod: String(kv.mod_revision), next: { ...holder, owners: want.owners } });
  });
  c.out.kept += unchanged;
  if (writes.length === 0) return left;
  const cmp = (w: (typeof writes)[number]): [string, 'Mod' | 'Create', '==', string | number] =>
    w.mod === null ? [a.macKey(w.want.mac), 'Create', '==', 0] : [a.macKey(w.want.mac), 'Mod', '==', w.mod];
  const [first, ...rest] = writes;
  let txn = a.client.if(...cmp(first!));
  for (const w of rest) txn = txn.and(...cmp(w));
  const ops = writes.flatMap((w) => [
    a.client.put(a.macKey(w.want.mac)).value(serializeLease(w.next)).lease(id),
    a.client.put(a.indexKey(a.host, w.want.mac)).value('').lease(id),
    ...(hasConflict(c, w.want.mac) ? [a.client.delete().key(a.conflictKey(w.want.mac))] : []),
  ]);
  const r = await a.call('re-assert', () => txn.then(...ops).commit());
  if (!r.succeeded) return [...left, ...writes.map((w) => w.want)];
  c.out.kept += writes.length;
  c.out.recreated.push(...writes.filter((w) => w.mod === null).map((w) => w.want));
  return left;
}

/** One lease, as the chunk would do it; a key that changed under us is read again, a few times. */
async function reassertOne(c: Reasserting, want: Lease, tries = 3): Promise<void> {
  const { a, id, out } = c;
  const key = a.macKey(want.mac);
  const clearConflict = async (): Promise<void> => {
    if (hasConflict(c, want.mac)) await a.call('re-assert', () => a.client.delete().key(a.conflictKey(want.mac)).exec());
  };
  const kv = (await a.call('re-assert', () => a.client.get(key).exec())).kvs[0];
  let holder = kv ? parseQuietly(kv.value.toString(), key) : null;
  const ours = !!kv && !!holder && holder.host === a.host && holder.vm?.uuid === want.vm?.uuid;
  if (ours && kv && holder) {
    let done = String(kv.lease) === id && sameOwners(holder, want);
    if (!done) {
      const next = { ...holder, owners: want.owners };
      done = (
        await a.call('re-assert', () =>
          a.client.if(key, 'Mod', '==', String(kv.mod_revision)).then(a.client.put(key).value(serializeLease(next)).lease(id), a.client.put(a.indexKey(a.host, want.mac)).value('').lease(id)).commit(),
        )
      ).succeeded;
    }
    if (done) {
      await clearConflict();
      out.kept += 1;
      return;
    }
  } else if (!kv) {
    const r = await a.call('re-assert', () =>
      a.client.if(key, 'Create', '==', 0).then(a.client.put(key).value(serializeLease(want)).lease(id), a.client.put(a.indexKey(a.host, want.mac)).value('').lease(id)).commit(),
    );
    if (r.succeeded) {
      await clearConflict();
      out.kept += 1;
      out.recreated.push(want);
      return;
    }
  }
  if ((ours || !kv) && tries > 1) {
    await reassertOne(c, want, tries - 1);
    return;
  }
  const again = await a.call('re-assert', () => a.client.get(key).string());
  holder = again === null ? null : parseQuietly(again, key);
  const conflict: Conflict = { version: 1, mac: want.mac, host: a.host, vm: want.vm ?? { name: '?' }, holder, detected: new Date().toISOString() };
  await a.call('recording a conflict', () => a.client.put(a.conflictKey(want.mac)).value(JSON.stringify(conflict)).exec());
  out.conflicts.push(conflict);
}
