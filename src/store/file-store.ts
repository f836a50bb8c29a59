/**
 * The embedded MAC pool: one directory on this host.
 *
 *   <dir>/pool.json             {"version":1,"cursors":{"42:00:00":"42:00:00:00:00:05"}}
 *   <dir>/leases/<12 hex>.json  one file per held address, created exclusively (link of a complete temp file)
 *   <dir>/pool.lock/            proper-lockfile's lock, serialising cursor moves, releases and gc
 *   <dir>/vms/<name>.json       what a named VM had last time (UUID, MAC per NIC); holds no address
 *
 * Allocation touches the cursor and one lease file, so its cost does not grow with the number of leases.
 * Lease files are not fsynced into the directory: after a host crash every VM lease is stale anyway,
 * and a lost cursor move only makes an address come round sooner.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UncloudError } from '../core/errors.js';
import {
  advance,
  checkInPool,
  exhaustedError,
  type FreeFrom,
  formatMac,
  freeFromSorted,
  indexOf,
  inPool,
  MAC_TEXT_RE,
  macAt,
  nextFree,
  parseMac,
  type Pool,
} from '../core/mac.js';
import { createFileExclusive, readTextIfExists, removeQuietly, TMP_PREFIX, writeFileAtomic } from '../system/atomic-file.js';
import { isOwnerAlive } from '../system/proc.js';
import { withDirLock } from '../system/dir-lock.js';
import { ensurePrivateDir } from '../system/private-dir.js';
import type { Conflict, DamagedRecord, KeepLease, Lease, LeaseList, LeaseRequest, Owner, PoolStatus, Store, VmIdentity } from './store.js';
import { damaged, parseConflict, parseIdentity, parseLease, parseRecord, serializeLease } from './lease.js';
import { allocateOrGc, byMac, Exhausted, FIRST_CURSOR, heldError, isStale, newLease } from './policy.js';

export interface FileStoreOptions {
  dir: string;
  host?: string;
  isAlive?: (owner: Owner) => boolean;
  /** Milliseconds a crashed holder's lock stays before others break it. */
  lockStaleMs?: number;
}

interface PoolFile {
  version: 1;
  cursors: Record<string, string>;
}

const TMP_MAX_AGE_MS = 60_000;
/** Held addresses in a row, probed one by one, before a scan reads the lease directory to skip the run. */
const LONG_RUN = 64;

export class FileStore implements Store {
  readonly where: string;
  private readonly dir: string;
  private readonly leaseDir: string;
  private readonly poolPath: string;
  private readonly host: string;
  private readonly isAlive: (owner: Owner) => boolean;
  private readonly lockStaleMs: number;
  private dirsReady = false;

  constructor(opts: FileStoreOptions) {
    this.dir = opts.dir;
    this.where = `file store ${opts.dir}`;
    this.leaseDir = join(opts.dir, 'leases');
    this.poolPath = join(opts.dir, 'pool.json');
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

  private allocateLocked(pool: Pool, requests: LeaseRequest[]): Lease[] {
    const file = this.readPoolFile();
    const cursorText = file.cursors[pool.prefix];
    let cursor = cursorText !== undefined ? indexOf(pool, parseMac(cursorText)) : FIRST_CURSOR;
    const taken: Lease[] = [];
    try {
      for (const req of requests) {
        const lease = (mac: string): Lease => newLease(mac, req, this.host);
        if (req.mac !== undefined) {
          const l = lease(req.mac);
          if (!this.claim(l)) throw heldError(req.mac, this.readLeaseQuietly(this.leasePath(req.mac)));
          taken.push(l);
          continue;
        }
        if (req.prefer !== undefined && inPool(pool, parseMac(req.prefer))) {
          const l = lease(req.prefer);
          if (this.claim(l)) {
            taken.push(l);
            continue;
          }
        }
        let got: Lease | undefined;
        const freeFrom = this.freeFrom(pool);
        const passed = new Set<number>();
        // A lost claim means the address is held now, so the next scan passes it: at most one loss per address.
        for (let index = nextFree(pool, cursor, freeFrom); index !== null; index = nextFree(pool, index + 1, freeFrom)) {
          const mac = formatMac(macAt(pool, index));
          // An address under a conflict record is not handed out; coming round to one again means none is left.
          if (this.conflicted(mac)) {
            if (passed.has(index)) break;
            passed.add(index);
            continue;
          }
          const l = lease(mac);
          if (this.claim(l)) {
            got = l;
            cursor = advance(pool, index);
            break;
          }
        }
        if (!got) throw new Exhausted();
        taken.push(got);
      }
      file.cursors[pool.prefix] = formatMac(macAt(pool, cursor));
      writeFileAtomic(this.poolPath, `${JSON.stringify(file)}\n`);
      return taken;
    } catch (err) {
      for (const l of taken) removeQuietly(this.leasePath(l.mac));
      throw err;
    }
  }

  async peek(pool: Pool, count: number): Promise<string[]> {
    const file = this.readPoolFile();
    const cursorText = file.cursors[pool.prefix];
    const cursor = cursorText !== undefined ? indexOf(pool, parseMac(cursorText)) : FIRST_CURSOR;
    const out: string[] = [];
    const held = this.freeFrom(pool);
    let at = cursor;
    while (out.length < count) {
      const index = nextFree(pool, at, (i) => (out.includes(formatMac(macAt(pool, i))) ? i + 1 : held(i)));
      if (index === null) break;
      out.push(formatMac(macAt(pool, index)));
      at = advance(pool, index);
    }
    if (out.length < count) throw exhaustedError(pool);
    return out;
  }

  async release(mac: string, expectVm?: string): Promise<boolean> {
    const canonical = formatMac(parseMac(mac));
    if (!this.exists(canonical)) return false;
    return this.withLock(() => {
      const path = this.leasePath(canonical);
      // A damaged lease can be released by its MAC (that is how an operator repairs it), never on a VM's behalf.
      const lease = this.readLeaseQuietly(path);
      if (!lease && (expectVm !== undefined || !existsSync(path))) return false;
      if (expectVm !== undefined && lease?.vm?.uuid !== expectVm && lease?.vm?.name !== expectVm) return false;
      removeQuietly(this.leasePath(canonical));
      return true;
    });
  }

  async setOwners(macs: string[], owners: Owner[]): Promise<void> {
    await this.withLock(() => {
      for (const mac of macs) {
        const path = this.leasePath(mac);
        const lease = this.readLease(path);
        if (!lease) throw new UncloudError('LEASE_GONE', `lease of ${mac} disappeared from ${this.where}`);
        writeFileAtomic(path, serializeLease({ ...lease, owners }));
      }
    });
  }

  async list(): Promise<LeaseList> {
    const leases: Lease[] = [];
    const damagedRecords: DamagedRecord[] = [];
    for (const entry of this.leaseEntries()) {
      const path = join(this.leaseDir, entry);
      try {
        const lease = this.readLease(path);
        if (lease) leases.push(lease);
      } catch (err) {
        damagedRecords.push({ key: path, why: (err as Error).message });
      }
    }
    return { leases: leases.sort(byMac), damaged: damagedRecords, conflicts: this.readConflicts(damagedRecords) };
  }

  async setConflict(mac: string, conflict: Conflict | null): Promise<void> {
    const path = join(this.dir, 'conflicts', `${mac.replaceAll(':', '')}.json`);
    if (conflict === null) return removeQuietly(path);
    this.ensureDirs();
    mkdirSync(join(this.dir, 'conflicts'), { recursive: true, mode: 0o700 });
    writeFileAtomic(path, `${JSON.stringify(conflict)}\n`);
  }

  private readConflicts(damagedRecords: DamagedRecord[]): Conflict[] {
    const dir = join(this.dir, 'conflicts');
    let entries: string[];
    try {
      entries = readdirSync(dir).filter((e) => e.endsWith('.json') && !e.startsWith(TMP_PREFIX));
    } catch {
      return [];
    }
    const out: Conflict[] = [];
    for (const e of entries.sort()) {
      const path = join(dir, e);
      const text = readTextIfExists(path);
      if (text === null) continue;
      try {
        out.push(parseConflict(text, path));
      } catch (err) {
        damagedRecords.push({ key: path, why: (err as Error).message });
      }
    }
    return out;
  }

  private conflicted(mac: string): boolean {
    return existsSync(join(this.dir, 'conflicts', `${mac.replaceAll(':', '')}.json`));
  }

  async status(pool: Pool): Promise<PoolStatus> {
    const file = this.readPoolFile();
    const prefixHex = pool.prefix.replaceAll(':', '');
    const held = this.leaseEntries().filter((e) => e.startsWith(prefixHex)).length;
    return {
      prefix: pool.prefix,
      size: pool.size,
      held,
      cursor: file.cursors[pool.prefix] ?? formatMac(macAt(pool, FIRST_CURSOR)),
    };
  }

  /**
   * The scan runs without the pool lock (at 100,000 leases it reads for seconds, and allocations must not wait
   * for it); only the stale leases it found are read again under the lock and freed if they are still stale.
   */
  async gc(keep?: KeepLease): Promise<Lease[]> {
    if (!this.dirExists()) return [];
    const now = Date.now();
    const candidates: string[] = [];
    for (const entry of readdirSync(this.leaseDir)) {
      const path = join(this.leaseDir, entry);
      if (entry.startsWith(TMP_PREFIX)) {
        // A writer killed between its temp file and the rename left this behind.
        const age = now - (safeMtime(path) ?? now);
        if (age > TMP_MAX_AGE_MS) removeQuietly(path);
        continue;
      }
      const lease = this.readLeaseQuietly(path);
      if (lease && isStale(lease, this.isAlive, keep)) candidates.push(path);
    }
    if (candidates.length === 0) return [];
    return this.withLock(() => {
      const freed: Lease[] = [];
      for (const path of candidates) {
        const lease = this.readLeaseQuietly(path);
        if (!lease || !isStale(lease, this.isAlive, keep)) continue;
        removeQuietly(path);
        freed.push(lease);
      }
      return freed;
    });
  }

  async getIdentity(name: string): Promise<VmIdentity | null> {
    const path = this.identityPath(name);
    const text = readTextIfExists(path);
    return text === null ? null : parseIdentity(text, path);
  }

  async putIdentity(identity: VmIdentity): Promise<void> {
    this.ensureDirs();
    mkdirSync(join(this.dir, 'vms'), { recursive: true, mode: 0o700 });
    writeFileAtomic(this.identityPath(identity.name), `${JSON.stringify(identity)}\n`);
  }

  async listIdentities(): Promise<VmIdentity[]> {
    let entries: string[];
    try {
      entries = readdirSync(join(this.dir, 'vms'));
    } catch {
      return [];
    }
    const out: VmIdentity[] = [];
    for (const e of entries.filter((x) => x.endsWith('.json') && !x.startsWith(TMP_PREFIX)).sort()) {
      const v = await this.getIdentity(e.slice(0, -'.json'.length));
      if (v) out.push(v);
    }
    return out;
  }

  async deleteIdentity(name: string): Promise<boolean> {
    if (!existsSync(this.identityPath(name))) return false;
    removeQuietly(this.identityPath(name));
    return true;
  }

  async get(mac: string): Promise<Lease | null> {
    return this.readLeaseQuietly(this.leasePath(formatMac(parseMac(mac))));
  }

  async close(): Promise<void> {}

  // --- internals ---

  private claim(lease: Lease): boolean {
    this.ensureDirs();
    return createFileExclusive(this.leasePath(lease.mac), serializeLease(lease));
  }

  /**
   * Where an allocation scan goes on from index i (see FreeFrom): one lstat per address while held runs are
   * short; once a run passes LONG_RUN, the held addresses are read from the lease directory once and every
   * run after that is skipped by binary search, so a cursor inside a long held run costs one directory read,
   * not one lstat per address.
   */
  private freeFrom(pool: Pool): FreeFrom {
    const prefixHex = pool.prefix.replaceAll(':', '');
    let run = 0;
    let sorted: FreeFrom | undefined;
    return (i) => {
      if (sorted) {
        const next = sorted(i);
        if (next !== i) return next;
      } else if (run >= LONG_RUN) {
        const held = this.leaseEntries()
          .filter((e) => e.startsWith(prefixHex))
          .map((e) => parseInt(e.slice(0, 12), 16) - pool.base)
          .sort((a, b) => a - b);
        sorted = freeFromSorted(held);
        const next = sorted(i);
        if (next !== i) return next;
      }
      // Addresses claimed after the directory was read are still found by lstat.
      if (this.exists(formatMac(macAt(pool, i)))) {
        run += 1;
        return i + 1;
      }
      run = 0;
      return i;
    };
  }

  private exists(mac: string): boolean {
    try {
      lstatSync(this.leasePath(mac));
      return true;
    } catch {
      return false;
    }
  }

  private identityPath(name: string): string {
    return join(this.dir, 'vms', `${name}.json`);
  }

  private leasePath(mac: string): string {
    return join(this.leaseDir, `${mac.replaceAll(':', '')}.json`);
  }

  private leaseEntries(): string[] {
    try {
      return readdirSync(this.leaseDir).filter((e) => e.endsWith('.json') && !e.startsWith(TMP_PREFIX));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /** A lease file, or null when it vanished meanwhile. A damaged one is an error naming the file. */
  private readLease(path: string): Lease | null {
    const text = readTextIfExists(path);
    return text === null ? null : parseLease(text, path);
  }

  /** As readLease, but a damaged record reads as null: gc and error messages go on past it. */
  private readLeaseQuietly(path: string): Lease | null {
    try {
      return this.readLease(path);
    } catch {
      return null;
    }
  }

  private readPoolFile(): PoolFile {
    const text = readTextIfExists(this.poolPath);
    if (text === null) return { version: 1, cursors: {} };
    const d = parseRecord<PoolFile>(text, 'state file', this.poolPath);
    if (typeof d.cursors !== 'object' || d.cursors === null) throw damaged('state file', this.poolPath, 'no cursors object');
    for (const [prefix, cursor] of Object.entries(d.cursors)) {
      if (typeof cursor !== 'string' || !MAC_TEXT_RE.test(cursor)) {
        throw damaged('state file', this.poolPath, `bad cursor for prefix ${prefix}`);
      }
    }
    return { version: 1, cursors: { ...d.cursors } as Record<string, string> };
  }

  private dirExists(): boolean {
    try {
      return statSync(this.dir).isDirectory();
    } catch {
      return false;
    }
  }

  /** Create the state directories (0700) on first write; refuse one others could write to. */
  private ensureDirs(): void {
    if (this.dirsReady) return;
    ensurePrivateDir(this.dir);
    mkdirSync(this.leaseDir, { recursive: true, mode: 0o700 });
    this.dirsReady = true;
  }

  private async withLock<T>(fn: () => T): Promise<T> {
    this.ensureDirs();
    return withDirLock(this.dir, { name: 'pool.lock', what: this.where, staleMs: this.lockStaleMs }, fn);
  }
}

function safeMtime(path: string): number | null {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return null;
  }
}
