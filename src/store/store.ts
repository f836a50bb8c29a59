/**
 * The Store interface every MAC pool backend implements (file store, etcd store), and the lease record.
 * A store hands out addresses next-free from a rotating cursor with an atomic claim per address.
 */
import type { Pool } from '../core/mac.js';
import type { Owner } from '../core/owner.js';

export type { Owner };

export interface LeaseVm {
  uuid?: string;
  name: string;
}

export interface Lease {
  version: 1;
  mac: string;
  vm: LeaseVm | null;
  nic: number | null;
  host: string;
  /** Empty: held until released (a manual `mac allocate`). Otherwise live while any owner runs. */
  owners: Owner[];
  created: string;
}

/** What the caller wants for one address. */
export interface LeaseRequest {
  vm: LeaseVm | null;
  nic: number | null;
  owners: Owner[];
  /** Claim exactly this MAC (fails if held) instead of the next free one. */
  mac?: string;
  /** Try this MAC first, fall back to the next free one if it is held (sticky identity). */
  prefer?: string;
}

export interface PoolStatus {
  prefix: string;
  size: number;
  held: number;
  cursor: string;
  /** Held addresses per host, where a store is shared by hosts (etcd). */
  byHost?: Record<string, number>;
}

/** What a named VM had last time, so it comes back with the same UUID and MACs. Holds no address. */
export interface VmIdentity {
  version: 1;
  name: string;
  uuid: string;
  /** MAC per NIC index, as last leased. */
  macs: string[];
  updated: string;
}

/** A record under the store's keys that could not be read; reported, never trusted, never silently deleted. */
export interface DamagedRecord {
  /** File path or etcd key. */
  key: string;
  why: string;
}

/**
 * A MAC that a running VM on `host` uses while the store says another holds it (etcd keys that expired
 * while a host was cut off and were taken meanwhile, or a forced release). Reported, never resolved silently:
 * while it stands, the address is not handed out again.
 */
export interface Conflict {
  version: 1;
  mac: string;
  /** The host whose running VM uses the MAC, and that VM. */
  host: string;
  vm: LeaseVm;
  /** What the store held for the MAC when the conflict was found (null: damaged). */
  holder: Lease | null;
  detected: string;
}

export interface LeaseList {
  /** Sorted by MAC. */
  leases: Lease[];
  damaged: DamagedRecord[];
  conflicts: Conflict[];
}

/** One page of a whole-store read, in MAC order: a reader never holds every lease at once. */
export interface LeasePage {
  leases: Lease[];
  damaged: DamagedRecord[];
  /**
   * Asked for (LeasePagesOptions.json) and at hand: leases[i] as an element of a JSON array indented by two
   * spaces (`JSON.stringify([lease], null, 2)` without its brackets), null when not printed.
   */
  json?: (string | null)[];
}

export interface LeasePagesOptions {
  /** The reader prints the leases as JSON: a store may give them printed too (LeasePage.json). */
  json?: boolean;
}

/** A lease that must not be freed although its recorded owners are gone (a live qemu found through its run dir). */
export type KeepLease = (lease: Lease) => boolean;

export interface Store {
  /** Human-readable location, for messages. */
  readonly where: string;
  /** Claim one address per request, all or none. Runs gc once before reporting exhaustion. */
  allocate(pool: Pool, requests: LeaseRequest[]): Promise<Lease[]>;
  /** The addresses the next allocation would give, without claiming anything. */
  peek(pool: Pool, count: number): Promise<string[]>;
  /** Free a lease. With expectVm, only if it still belongs to that VM. Returns whether it was held. */
  release(mac: string, expectVm?: string): Promise<boolean>;
  /** Replace the owners of leases (e.g. add qemu's pid once it runs). */
  setOwners(macs: string[], owners: Owner[]): Promise<void>;
  /** Every lease; damaged records are listed apart and never stop the others from being read. Costs the whole pool. */
  list(): Promise<LeaseList>;
  /** Every lease a page at a time, in MAC order (what `mac list` streams); damaged records in their page. */
  leasePages(opts?: LeasePagesOptions): AsyncIterable<LeasePage>;
  /**
   * The leases recorded for this host (every lease whose `host` is this one, manual ones included), read
   * through the store's host index: costs what this host holds, not the pool. Damaged records the index
   * names are listed apart; conflicts are all of them (few).
   */
  listHost(): Promise<LeaseList>;
  /** The conflict records alone (few; no lease is read). */
  listConflicts(): Promise<{ conflicts: Conflict[]; damaged: DamagedRecord[] }>;
  /** The lease of one MAC; null when it is free or its record is damaged. */
  get(mac: string): Promise<Lease | null>;
  /** `held` from a count the store keeps (or asks its backend for), not by reading the leases. */
  status(pool: Pool): Promise<PoolStatus>;
  /**
   * Free this host's leases whose owners are all gone (unless `keep` says otherwise), found through the host
   * index without holding up allocations. Returns the freed leases.
   */
  gc(keep?: KeepLease): Promise<Lease[]>;
  /** Record (or clear, with null) a conflict on a MAC; see Conflict. */
  setConflict(mac: string, conflict: Conflict | null): Promise<void>;
  getIdentity(name: string): Promise<VmIdentity | null>;
  putIdentity(identity: VmIdentity): Promise<void>;
  /** Every remembered VM in name order; a damaged record is named in `damaged`, never stops the others. */
  listIdentities(): Promise<{ identities: VmIdentity[]; damaged: DamagedRecord[] }>;
  /** Returns whether there was one. */
  deleteIdentity(name: string): Promise<boolean>;
  close(): Promise<void>;
}
