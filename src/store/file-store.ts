/**
 * The embedded MAC pool: one directory on this host (layout in file-records.ts).
 *
 * Every change of lease files runs under the pool lock and in one order: pool.json first (cursor, and the
 * held counts with the changing MACs pending: file-tally.ts), then the host index entries of new leases
 * (file-host-index.ts), then the lease files, then the index entries of removed leases. A kill at any instant
 * leaves counts that read right and no lease the index does not show. Allocation touches the cursor, one
 * index entry and one lease file; `mac pool` reads pool.json; gc and `list` read this host's index entries and
 * their leases; `mac list` streams every lease a page at a time. Lease files are not fsynced into the
 * directory: after a host crash every VM lease is stale anyway, the index is checked again once per boot, and
 * a lost cursor move only makes an address come round sooner.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UncloudError } from '../core/errors.js';
import { checkInPool, formatMac, macAt, parseMac, type Pool } from '../core/mac.js';
import { linkStaged, placeStaged, removeQuietly, removeStaged, type StagedFile, syncStaged } from '../system/atomic-file.js';
import { isOwnerAlive } from '../system/proc.js';
import { withDirLock } from '../system/dir-lock.js';
import { FileRecords, leasePageOf, namesIn, poolText } from './file-records.js';
import { readPages } from './file-lease-pages.js';
import { HostIndex, sweepIfOld } from './file-host-index.js';
import { FileSideRecords } from './file-side-records.js';
import { chooseAddresses } from './file-scan.js';
import { beforeChange, countFromDir, heldUnder, macPrefixOfHex, settledCounts } from './file-tally.js';
import { serializeLease } from './lease.js';
import { allocateOrGc, byMac, heldError, isStale, newLease } from './policy.js';
import type { KeepLease, Lease, LeaseList, LeasePage, LeasePagesOptions, LeaseRequest, Owner, PoolStatus, Store } from './store.js';

export interface FileStoreOptions {
  dir: string;
  host?: string;
  isAlive?: (owner: Owner) => boolean;
  /** Milliseconds a crashed holder's lock stays before others break it. */
  lockStaleMs?: number;
}

/** Lease files read per page of `leasePages()`. */
const PAGE = 1000;
/** Lost claims in a row (only a writer that broke a stale lock can take an address under the lock) before giving up. */
const MAX_LOST = 10;

export class FileStore extends FileSideRecords implements Store {
  readonly where: string;
  private readonly index: HostIndex;
  private readonly host: string;
  private readonly isAlive: (owner: Owner) => boolean;
  private readonly lockStaleMs: number;

  constructor(opts: FileStoreOptions) {
    super(new FileRecords(opts.dir));
    this.where = `file store ${opts.dir}`;
    this.index = new HostIndex(this.r);
    this.r.onNew = () => this.index.markNew();
    this.host = opts.host ?? hostname();
    this.isAlive = opts.isAlive ?? isOwnerAlive;
    this.lockStaleMs = opts.lockStaleMs ?? 10_000;
  }

  async allocate(pool: Pool, requests: LeaseRequest[]): Promise<Lease[]> {
    for (const req of requests) {
      if (req.mac !== undefined) checkInPool(pool, req.mac);
    }
    return allocateOrGc(
      pool,
      () => this.withLock(() => this.allocateLocked(pool, requests)),
      () => this.gc(),
    );
  }

  private async allocateLocked(pool: Pool, requests: LeaseRequest[]): Promise<Lease[]> {
    for (let lost = 0; ; lost++) {
      const file = this.r.readPoolFile();
      const choice = chooseAddresses(this.r, pool, this.r.cursorOf(file, pool), requests);
      const leases = requests.map((req, i) => newLease(choice.macs[i]!, req, this.host));
      const next = beforeChange(file, this.r, choice.macs, [pool.prefix]);
      next.cursors = { ...file.cursors, [pool.prefix]: formatMac(macAt(pool, choice.cursor)) };
      // pool.json and the lease files are fsynced together (one wait on the disk, not one per file), then put
      // in place in the order the counts need: pool.json, the index entries, the lease files.
      const staged: StagedFile[] = [];
      const taken: Lease[] = [];
      try {
        staged.push(this.r.stage(this.r.poolPath, poolText(next)));
        for (const l of leases) staged.push(this.r.stage(this.r.leasePath(l.mac), serializeLease(l)));
        await syncStaged(staged);
        placeStaged(staged[0]!);
        for (const l of leases) this.index.add(this.host, l.mac);
        for (const [i, l] of leases.entries()) {
          if (!linkStaged(staged[i + 1]!)) break;
          taken.push(l);
        }
      } catch (err) {
        for (const l of taken) removeQuietly(this.r.leasePath(l.mac));
        throw err;
      } finally {
        removeStaged(staged);
      }
      if (taken.length === leases.length) return leases;
      // All or none; the index entries stay (an entry without a lease is skipped, and gc removes it).
      for (const l of taken) removeQuietly(this.r.leasePath(l.mac));
      const loser = leases[taken.length]!;
      if (requests[taken.length]!.mac !== undefined || lost >= MAX_LOST) throw heldError(loser.mac, this.r.readLeaseQuietly(this.r.leasePath(loser.mac)));
    }
  }

  async peek(pool: Pool, count: number): Promise<string[]> {
    const file = this.r.readPoolFile();
    return chooseAddresses(this.r, pool, this.r.cursorOf(file, pool), Array.from({ length: count }, () => ({}))).macs;
  }

  async release(mac: string, expectVm?: string): Promise<boolean> {
    const canonical = formatMac(parseMac(mac));
    if (!this.r.exists(canonical)) return false;
    return this.withLock(() => {
      const path = this.r.leasePath(canonical);
      // A damaged lease can be released by its MAC (that is how an operator repairs it), never on a VM's behalf.
      const lease = this.r.readLeaseQuietly(path);
      if (!lease && (expectVm !== undefined || !existsSync(path))) return false;
      if (expectVm !== undefined && lease?.vm?.uuid !== expectVm && lease?.vm?.name !== expectVm) return false;
      this.removeLeases([{ mac: canonical, host: lease?.host ?? this.host }]);
      return true;
    });
  }

  async setOwners(macs: string[], owners: Owner[]): Promise<void> {
    await this.withLock(() => {
      for (const mac of macs) {
        const path = this.r.leasePath(mac);
        const lease = this.r.readLease(path);
        if (!lease) throw new UncloudError('LEASE_GONE', `lease of ${mac} disappeared from ${this.where}`);
        this.r.writeAtomic(path, serializeLease({ ...lease, owners }));
      }
    });
  }

  /**
   * Every lease in MAC order, PAGE lease files at a time; damaged ones in the page where they fall. Having
   * seen every name, it checks the held counts too: only a live holder whose lock was broken as stale (stalled
   * for longer than the lock's stale time, e.g. in an fsync) can leave one wrong; it is counted again.
   */
  async *leasePages(opts: LeasePagesOptions = {}): AsyncGenerator<LeasePage> {
    let names: string[] = [];
    for await (const read of readPages(this.r.leaseDir, () => (names = this.r.leaseNames().sort()), PAGE, { json: opts.json })) {
      yield leasePageOf(this.r.leaseDir, read);
    }
    const file = this.r.readPoolFileIfReadable();
    const counts = file ? settledCounts(file, this.r) : {};
    if (Object.entries(counts).every(([p, n]) => names.filter((e) => e.startsWith(p)).length === n)) return;
    // Allocations meanwhile also make them differ: counted again under the lock, written only if wrong.
    await this.withLock(() => {
      const now = this.r.readPoolFileIfReadable();
      if (!now) return;
      const recount = beforeChange({ version: 1, cursors: now.cursors }, this.r, [], Object.keys(now.held ?? {}).map(macPrefixOfHex));
      if (JSON.stringify(recount.held) !== JSON.stringify(settledCounts(now, this.r))) this.r.writePoolFile(recount);
    });
  }

  async list(): Promise<LeaseList> {
    const out: LeaseList = { leases: [], damaged: [], conflicts: [] };
    for await (const page of this.leasePages()) {
      out.leases.push(...page.leases);
      out.damaged.push(...page.damaged);
    }
    out.conflicts = this.readConflicts(out.damaged);
    return out;
  }

  async listHost(): Promise<LeaseList> {
    if (this.index.state() === 'missing') {
      // Not known to be whole (a store from before the index, until gc builds it): every lease file, read only.
      const all = await this.list();
      return { ...all, leases: all.leases.filter((l) => l.host === this.host), damaged: [...this.index.damaged(), ...all.damaged] };
    }
    const out: LeaseList = { leases: [], damaged: [], conflicts: [] };
    for (const mac of this.index.macs(this.host)) this.r.readLeaseInto(this.r.leasePath(mac), out.leases, out.damaged);
    out.leases = out.leases.filter((l) => l.host === this.host).sort(byMac);
    out.conflicts = this.readConflicts(out.damaged);
    return out;
  }

  async status(pool: Pool): Promise<PoolStatus> {
    const file = this.r.readPoolFile();
    // A prefix not counted yet is counted from the directory (the next allocation under it keeps a count).
    const held = heldUnder(file, this.r, pool.prefix) ?? countFromDir(this.r, pool.prefix);
    return { prefix: pool.prefix, size: pool.size, held, cursor: formatMac(macAt(pool, this.r.cursorOf(file, pool))) };
  }

  /**
   * Reads this host's index without the pool lock (allocations never wait for it); only the stale leases it
   * found are read again under the lock and freed if they still are. Index entries without a lease, or of
   * a lease that is another host's, are removed under the lock too.
   */
  async gc(keep?: KeepLease): Promise<Lease[]> {
    if (!this.r.dirExists()) return [];
    await this.checkIndex();
    for (const name of namesIn(this.r.tmpDir)) sweepIfOld(join(this.r.tmpDir, name));
    const candidates: string[] = [];
    const strays: string[] = [];
    for (const mac of this.index.macs(this.host)) {
      const lease = this.r.readLeaseQuietly(this.r.leasePath(mac));
      if (lease ? lease.host !== this.host : !this.r.exists(mac)) strays.push(mac);
      else if (lease && isStale(lease, this.isAlive, keep)) candidates.push(mac);
    }
    if (candidates.length === 0 && strays.length === 0) return [];
    return this.withLock(() => {
      const freed: Lease[] = [];
      for (const mac of candidates) {
        const lease = this.r.readLeaseQuietly(this.r.leasePath(mac));
        if (lease && lease.host === this.host && isStale(lease, this.isAlive, keep)) freed.push(lease);
      }
      this.removeLeases(freed);
      for (const mac of strays) {
        const lease = this.r.readLeaseQuietly(this.r.leasePath(mac));
        if (lease ? lease.host !== this.host : !this.r.exists(mac)) this.index.remove(this.host, mac);
      }
      return freed;
    });
  }

  async close(): Promise<void> {}

  // --- internals ---

  /** Under the lock: counts first (the MACs pending), then the lease files, then their index entries. */
  private removeLeases(leases: { mac: string; host: string }[]): void {
    if (leases.length === 0) return;
    const file = this.r.readPoolFileIfReadable();
    if (file) this.r.writePoolFile(beforeChange(file, this.r, leases.map((l) => l.mac)));
    for (const l of leases) {
      removeQuietly(this.r.leasePath(l.mac));
      this.index.remove(l.host, l.mac);
      if (l.host !== this.host) this.index.remove(this.host, l.mac);
    }
  }

  /** gc: the index and the counts checked against the lease files when not yet in this boot (file-host-index.ts). */
  private async checkIndex(): Promise<void> {
    if (this.index.state() === 'checked') return;
    await this.withLock(() => {
      if (this.index.state() === 'checked') return;
      const file = this.r.readPoolFileIfReadable();
      if (file) {
        // Counted again from the directory: a power loss may have kept a lease file and lost a pool.json rename.
        this.r.writePoolFile(beforeChange({ version: 1, cursors: file.cursors }, this.r, [], Object.keys(file.held ?? {}).map(macPrefixOfHex)));
      }
      this.index.rebuild(this.host);
    });
  }

  protected async withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    this.r.ensureDirs();
    return withDirLock(this.r.dir, { name: 'pool.lock', what: this.where, staleMs: this.lockStaleMs }, fn);
  }
}
