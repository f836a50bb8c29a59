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
  list(): Promise<Lease[]>;
  status(pool: Pool): Promise<PoolStatus>;
  /** Free every lease whose owners are all gone. Returns the freed leases. */
  gc(): Promise<Lease[]>;
  getIdentity(name: string): Promise<VmIdentity | null>;
  putIdentity(identity: VmIdentity): Promise<void>;
  listIdentities(): Promise<VmIdentity[]>;
  /** Returns whether there was one. */
  deleteIdentity(name: string): Promise<boolean>;
  close(): Promise<void>;
}
