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

export async function announce(a: EtcdAccess): Promise<{ id: string; lease: EtcdLease }> {
  const lease = a.client.lease(a.ttlS);
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

/**
 * For each expected lease: the key is there and ours (same VM) → attach it to lease `id`; absent → create it
 * (compare: still absent); another VM's → a conflict, recorded and returned. Conflicts that no longer
 * stand (the key is ours again) are cleared.
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
  const clearConflict = async (mac: string): Promise<void> => {
    if (standing.has(mac.replaceAll(':', ''))) await a.call('re-assert', () => a.client.delete().key(a.conflictKey(mac)).exec());
  };
  const sameOwners = (x: Lease, y: Lease) => JSON.stringify(x.owners) === JSON.stringify(y.owners);
  for (const want of expected) {
    const key = a.macKey(want.mac);
    const res = await a.call('re-assert', () => a.client.get(key).exec());
    const kv = res.kvs[0];
    let holder: Lease | null = null;
    if (kv) {
      try {
        holder = parseLease(kv.value.toString(), key);
      } catch {
        holder = null;
      }
    }
    if (kv && holder && holder.host === a.host && holder.vm?.uuid === want.vm?.uuid) {
      // Already on this lease with these owners (the periodic pass, mostly): nothing to write.
      if (String(kv.lease) !== id || !sameOwners(holder, want)) {
        const next = { ...holder, owners: want.owners };
        await a.call('re-assert', () =>
          a.client.if(key, 'Mod', '==', String(kv.mod_revision)).then(a.client.put(key).value(serializeLease(next)).lease(id)).commit(),
        );
      }
      await clearConflict(want.mac);
      out.kept += 1;
      continue;
    }
    if (!kv) {
      const r = await a.call('re-assert', () =>
        a.client.if(key, 'Create', '==', 0).then(a.client.put(key).value(serializeLease(want)).lease(id)).commit(),
      );
      if (r.succeeded) {
        await clearConflict(want.mac);
        out.kept += 1;
        out.recreated.push(want);
        continue;
      }
      const again = await a.call('re-assert', () => a.client.get(key).string());
      try {
        holder = again === null ? null : parseLease(again, key);
      } catch {
        holder = null;
      }
    }
    const conflict: Conflict = { version: 1, mac: want.mac, host: a.host, vm: want.vm ?? { name: '?' }, holder, detected: new Date().toISOString() };
    await a.call('recording a conflict', () => a.client.put(a.conflictKey(want.mac)).value(JSON.stringify(conflict)).exec());
    out.conflicts.push(conflict);
  }
  return out;
}
