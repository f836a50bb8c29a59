/**
 * What both stores decide alike: how a lease record is made, when a lease is stale, what an exhausted or
 * held pool says, and the gc-then-retry on exhaustion. The stores differ only in how they claim and read.
 */
import { UncloudError } from '../core/errors.js';
import { exhaustedError, type Pool } from '../core/mac.js';
import type { Owner } from '../core/owner.js';
import type { Conflict, KeepLease, Lease, LeaseRequest } from './store.js';

/** A new pool starts at suffix 1, as the old mac-gen.py did; suffix 0 comes round after the wrap. */
export const FIRST_CURSOR = 1;

/** Thrown inside a store when no address is free; becomes exhaustedError after one gc. */
export class Exhausted extends Error {}

export function newLease(mac: string, req: LeaseRequest, host: string, now = new Date()): Lease {
  return { version: 1, mac, vm: req.vm, nic: req.nic, host, owners: req.owners, created: now.toISOString() };
}

/** Who holds a lease, for messages: "VM web1 on host h1" or "a manual allocation". */
export function holderOf(lease: Lease | null, host?: string): string {
  if (!lease) return 'another allocation';
  const who = lease.vm ? `VM ${lease.vm.name}` : 'a manual allocation';
  return host !== undefined && lease.host !== host ? `${who} on host ${lease.host}` : who;
}

export function heldError(mac: string, lease: Lease | null, host?: string): UncloudError {
  return new UncloudError('MAC_HELD', `MAC ${mac} is already held by ${holderOf(lease, host)}; pick another or release it first`);
}

export function byMac(a: Lease, b: Lease): number {
  return a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0;
}

/**
 * A lease gc may free: owners recorded (a manual allocation has none and is held until released), none of
 * them running, and not kept by the caller (a live qemu found through its run dir). Owners are pids of this
 * host: the etcd store asks only about this host's leases.
 */
export function isStale(lease: Lease, isAlive: (o: Owner) => boolean, keep?: KeepLease): boolean {
  if (lease.owners.length === 0) return false;
  if (lease.owners.some((o) => isAlive(o))) return false;
  return !(keep?.(lease) ?? false);
}

/** Allocate; when the pool is exhausted, reclaim what dead owners left behind and try once more. */
export async function allocateOrGc(pool: Pool, attempt: () => Promise<Lease[]>, gc: () => Promise<unknown>): Promise<Lease[]> {
  try {
    return await attempt();
  } catch (err) {
    if (!(err instanceof Exhausted)) throw err;
  }
  await gc();
  try {
    return await attempt();
  } catch (err) {
    if (err instanceof Exhausted) throw exhaustedError(pool);
    throw err;
  }
}

/** One line an operator can act on. */
export function conflictMessage(c: Conflict): string {
  return `CONFLICT: MAC ${c.mac} is used by running VM ${c.vm.name} on host ${c.host} but held by ${c.holder ? holderOf(c.holder, c.host) : 'a damaged record'}; stop one of them (the address is not handed out again while this stands)`;
}
