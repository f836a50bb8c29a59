/**
 * Giving addresses back in the etcd store and changing held leases: release (compare on the key's revision,
 * so a lease taken again meanwhile is never freed), owners, gc of this host's stale leases, conflict records.
 */
import { UncloudError } from '../core/errors.js';
import { formatMac, parseMac } from '../core/mac.js';
import type { Owner } from '../core/owner.js';
import type { EtcdConn } from './etcd-client.js';
import { checkHostCount, countIfNeeded, CountDelta, DAMAGED_HOST } from './etcd-held-count.js';
import { dropIndexKey, hostLeaseKeys } from './etcd-host-index.js';
import { parseLease, serializeLease } from './lease.js';
import { isStale } from './policy.js';
import type { Conflict, KeepLease, Lease } from './store.js';

/** Free a lease; with expectVm, only if it still belongs to that VM. Returns whether it was freed. */
export async function releaseLease(c: EtcdConn, mac: string, expectVm?: string): Promise<boolean> {
  const key = c.macKey(formatMac(parseMac(mac)));
  const res = await c.call('release', () => c.client.get(key).exec());
  const kv = res.kvs[0];
  if (!kv) return false;
  let lease: Lease | null = null;
  try {
    lease = parseLease(kv.value.toString(), key);
  } catch {
    // damaged: its index key is under this host, where the index check put it
  }
  // A damaged lease can be released by its MAC (that is how an operator repairs it), never on a VM's behalf.
  if (expectVm !== undefined && (!lease || (lease.vm?.uuid !== expectVm && lease.vm?.name !== expectVm))) return false;
  // The lease and its host index key go together (etcd-host-index.ts).
  const m = formatMac(parseMac(mac));
  const index = [...new Set([lease?.host ?? c.host, c.host])].map((h) => c.client.delete().key(c.indexKey(h, m)));
  // Counted off where it was counted (etcd-held-count.ts); the compare on the key's revision also says its etcd lease still stands.
  const count = new CountDelta().add(m, lease?.host ?? DAMAGED_HOST, String(kv.lease), -1).ops(c);
  const r = await c.call('release', () => c.client.if(key, 'Mod', '==', String(kv.mod_revision)).then(c.client.delete().key(key), ...index, ...count).commit());
  return r.succeeded;
}

/**
 * Replace the owners of leases and claim them for this host. Owners mean a running VM: a lease not yet
 * attached to an etcd lease is attached to `hostLeaseId()`'s.
 */
export async function setLeaseOwners(c: EtcdConn, macs: string[], owners: Owner[], hostLeaseId: () => Promise<string>): Promise<void> {
  for (const mac of macs) {
    const key = c.macKey(mac);
    const res = await c.call('update', () => c.client.get(key).exec());
    const kv = res.kvs[0];
    if (!kv) throw new UncloudError('LEASE_GONE', `lease of ${mac} disappeared from ${c.where}`);
    const lease = parseLease(kv.value.toString(), key);
    const next = { ...lease, owners, host: c.host };
    const leaseId = String(kv.lease) !== '0' ? String(kv.lease) : owners.length > 0 ? await hostLeaseId() : undefined;
    // The host index key moves with the lease to this host, on no etcd lease (etcd-host-index.ts).
    const put = c.client.put(key).value(serializeLease(next));
    const puts = [leaseId !== undefined ? put.lease(leaseId) : put, c.client.put(c.indexKey(c.host, mac)).value('')];
    const moved = lease.host !== c.host ? [c.client.delete().key(c.indexKey(lease.host, mac))] : [];
    const count = new CountDelta().move(mac, { host: lease.host, lease: String(kv.lease) }, { host: c.host, lease: leaseId }).ops(c);
    await c.call('update', () => c.client.if(key, 'Mod', '==', String(kv.mod_revision)).then(...puts, ...moved, ...count).commit());
  }
}

/**
 * Free this host's leases whose owners are all gone, found through this host's index (other hosts' leases
 * are theirs, and their TTL's). Index keys whose lease is gone or another host's now are deleted, and this
 * host's held count is checked against the lease keys read (etcd-held-count.ts).
 */
export async function gcLeases(
  c: EtcdConn,
  isAlive: (o: Owner) => boolean,
  release: (mac: string, expectVm?: string) => Promise<boolean>,
  keep?: KeepLease,
): Promise<Lease[]> {
  const freed: Lease[] = [];
  await countIfNeeded(c);
  const at = await hostLeaseKeys(c);
  for (const { mac, kv } of at.keys) {
    if (!kv) {
      await dropIndexKey(c, mac, kv);
      continue;
    }
    let lease: Lease;
    try {
      lease = parseLease(kv.value.toString(), kv.key.toString());
    } catch {
      continue; // a damaged record is reported by list, never freed by gc
    }
    if (lease.host !== c.host) await dropIndexKey(c, mac, kv);
    else if (isStale(lease, isAlive, keep) && (await release(lease.mac, lease.vm?.uuid ?? lease.vm?.name))) freed.push(lease);
  }
  // This host's count against the keys read above (releases since then count themselves).
  await checkHostCount(c, at, () => hostLeaseKeys(c));
  return freed;
}

export async function setConflict(c: EtcdConn, mac: string, conflict: Conflict | null): Promise<void> {
  const key = c.conflictKey(mac);
  if (conflict === null) await c.call('clearing a conflict', () => c.client.delete().key(key).exec());
  else await c.call('recording a conflict', () => c.client.put(key).value(JSON.stringify(conflict)).exec());
}
