/**
 * The cluster MAC pool on etcd, for hosts that share one layer-2 network: the Store and the HostAgent made of
 * the modules that do the work (key layout and connection in etcd-client.ts, allocation in etcd-allocate.ts,
 * reads in etcd-read.ts, release and gc in etcd-release.ts, the host lease in etcd-own-lease.ts and
 * etcd-host-lease.ts).
 *
 * Addresses of running VMs (leases with owners) are attached to an etcd lease of their host, kept alive by
 * `uncloud-vm agent` (or, without one, by the foreground launcher itself): when a host dies its addresses
 * return to the pool after the TTL. Manual allocations have no TTL and stay until released.
 */
import { hostname } from 'node:os';
import type { Lease as EtcdLease } from 'etcd3';
import { checkInPool, formatMac, parseMac, type Pool } from '../core/mac.js';
import type { EtcdTarget } from '../core/store-url.js';
import { isOwnerAlive } from '../system/proc.js';
import { EtcdAllocator } from './etcd-allocate.js';
import { EtcdConn, macHex } from './etcd-client.js';
import { peekFree } from './etcd-free-scan.js';
import { countedHeld } from './etcd-held-count.js';
import { announce, type Asserted, ensureAnnounced, type HostAgent, reassert, type ReassertResult, type Reannounced } from './etcd-host-lease.js';
import { deleteIdentity, getIdentity, listIdentities, putIdentity } from './etcd-identity.js';
import { HostLeaseSource, type OwnLeaseOptions } from './etcd-own-lease.js';
import { heldByHost, listHostLeases } from './etcd-host-index.js';
import { getLease, leasePages, listConflicts, listLeases, poolStatus } from './etcd-read.js';
import { gcLeases, releaseLease, setConflict, setLeaseOwners } from './etcd-release.js';
import { allocateOrGc } from './policy.js';
import type { Conflict, DamagedRecord, KeepLease, Lease, LeaseList, LeasePage, LeaseRequest, Owner, PoolStatus, Store, VmIdentity } from './store.js';

export interface EtcdStoreOptions extends OwnLeaseOptions {
  target: EtcdTarget;
  host?: string;
  isAlive?: (o: Owner) => boolean;
  auth?: { username: string; password: string };
  credentials?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer };
}

export class EtcdStore implements Store, HostAgent {
  readonly where: string;
  readonly host: string;
  private readonly c: EtcdConn;
  private readonly isAlive: (o: Owner) => boolean;
  /** Leases this process took for running VMs: re-asserted if this process's own etcd lease is lost. */
  private readonly heldHere = new Map<string, Lease>();
  private readonly allocator: EtcdAllocator;
  /** What the agent's last re-assert left each key as: the next pass confirms those with compares instead of reading them. */
  private readonly asserted = new Map<string, Asserted>();
  private readonly hostLease: HostLeaseSource;

  constructor(opts: EtcdStoreOptions) {
    this.c = new EtcdConn({
      target: opts.target,
      host: opts.host ?? hostname(),
      ...(opts.auth ? { auth: opts.auth } : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
    });
    this.where = this.c.where;
    this.host = this.c.host;
    this.isAlive = opts.isAlive ?? isOwnerAlive;
    this.allocator = new EtcdAllocator(this.c, (mac) => this.release(mac));
    this.hostLease = new HostLeaseSource(this.c, opts, () => [...this.heldHere.values()]);
  }

  async allocate(pool: Pool, requests: LeaseRequest[]): Promise<Lease[]> {
    for (const req of requests) {
      if (req.mac !== undefined) checkInPool(pool, req.mac);
    }
    const ephemeral = requests.some((r) => r.owners.length > 0);
    const leaseId = ephemeral ? await this.hostLeaseId() : undefined;
    const leases = await allocateOrGc(
      pool,
      () => this.allocator.allocate(pool, requests, leaseId),
      () => this.gc(),
    );
    // What this process holds for running VMs: re-created if their keys expire while etcd is away.
    leases.forEach((l, i) => {
      if (requests[i]!.owners.length > 0) this.heldHere.set(l.mac, l);
    });
    return leases;
  }

  peek(pool: Pool, count: number): Promise<string[]> {
    return peekFree(this.c, pool, count);
  }

  async release(mac: string, expectVm?: string): Promise<boolean> {
    const freed = await releaseLease(this.c, mac, expectVm);
    if (freed) {
      const m = formatMac(parseMac(mac));
      this.heldHere.delete(m);
      this.allocator.forget(m);
    }
    return freed;
  }

  setOwners(macs: string[], owners: Owner[]): Promise<void> {
    return setLeaseOwners(this.c, macs, owners, () => this.hostLeaseId());
  }

  list(): Promise<LeaseList> {
    return listLeases(this.c);
  }

  leasePages(): AsyncGenerator<LeasePage> {
    return leasePages(this.c);
  }

  listHost(): Promise<LeaseList> {
    return listHostLeases(this.c);
  }

  listConflicts(): Promise<{ conflicts: Conflict[]; damaged: DamagedRecord[] }> {
    return listConflicts(this.c);
  }

  get(mac: string): Promise<Lease | null> {
    return getLease(this.c, mac);
  }

  async status(pool: Pool): Promise<PoolStatus> {
    const prefixHex = macHex(pool.prefix);
    const counted = await countedHeld(this.c, prefixHex);
    if (typeof counted === 'object') return { ...(await poolStatus(this.c, pool, counted.held)), byHost: counted.byHost };
    // Not counted (yet), or a count that cannot be right: etcd counts the keys.
    const [s, byHost] = await Promise.all([poolStatus(this.c, pool), heldByHost(this.c, prefixHex)]);
    return { ...s, byHost };
  }

  gc(keep?: KeepLease): Promise<Lease[]> {
    return gcLeases(this.c, this.isAlive, (mac, vm) => this.release(mac, vm), keep);
  }

  setConflict(mac: string, conflict: Conflict | null): Promise<void> {
    return setConflict(this.c, mac, conflict);
  }

  getIdentity(name: string): Promise<VmIdentity | null> {
    return getIdentity(this.c, name);
  }

  putIdentity(identity: VmIdentity): Promise<void> {
    return putIdentity(this.c, identity);
  }

  listIdentities(): Promise<{ identities: VmIdentity[]; damaged: DamagedRecord[] }> {
    return listIdentities(this.c);
  }

  deleteIdentity(name: string): Promise<boolean> {
    return deleteIdentity(this.c, name);
  }

  /** The etcd lease this host's running VMs hang on (the agent's, else this process's own). */
  hostLeaseId(): Promise<string> {
    return this.hostLease.id();
  }

  // --- the host agent's side (etcd-host-lease.ts) ---

  takeLease(): Promise<{ id: string; lease: EtcdLease }> {
    return announce(this.c);
  }

  ensureAnnounced(held: { id: string; lease: EtcdLease }): Promise<Reannounced> {
    return ensureAnnounced(this.c, held);
  }

  reassert(id: string, expected: Lease[]): Promise<ReassertResult> {
    return reassert(this.c, id, expected, this.asserted);
  }

  async close(): Promise<void> {
    await this.hostLease.revoke();
    this.c.close();
  }
}
