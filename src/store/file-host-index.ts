/**
 * The file store's host index: hosts/<host>/<12 hex>, an empty file for every lease recorded for <host>, so
 * gc and `list` read what one host holds, not every lease of the pool.
 *
 * It never hides a lease. Under the pool lock an entry is created before its lease file and removed only after
 * the lease file is gone, so a kill at any instant leaves at most an entry without a lease: readers skip it and
 * gc removes it. hosts/.complete says the index holds every lease file, and in which boot that was checked:
 * written with the store's first directory (no lease yet), or by the first gc that finds it missing (a store
 * written before the index existed, a check killed half-way, an operator asking for one by deleting it) or
 * from an earlier boot (a power loss may keep a lease file and lose its entry, which was never synced: at most
 * the leases taken in the last moments, all stale after the crash). That gc checks the index against every
 * lease file once, under the lock, and puts back what is missing. Without the marker, readers read every
 * lease file instead (they never write).
 */
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readTextIfExists, removeQuietly, sweepTemp, TMP_PREFIX } from '../system/atomic-file.js';
import { type FileRecords, HEX12_RE, hexOf, macOfHex, namesIn } from './file-records.js';
import { damaged } from './lease.js';
import type { DamagedRecord } from './store.js';

const MARKER = '.complete';
/** A temp file older than this was left by a writer killed between writing it and linking it. */
export const TMP_MAX_AGE_MS = 60_000;

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

export class HostIndex {
  constructor(private readonly r: FileRecords) {}

  private hostDir(host: string): string {
    return join(this.r.hostsDir, host);
  }

  /** Record that `mac`'s lease is (about to be) `host`'s. Under the pool lock, before the lease file is written. */
  add(host: string, mac: string): void {
    const dir = this.hostDir(host);
    try {
      writeFileSync(join(dir, hexOf(mac)), '', { mode: 0o600 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      writeFileSync(join(dir, hexOf(mac)), '', { mode: 0o600 });
    }
  }

  /** Under the pool lock, after the lease file is gone (or is another host's). */
  remove(host: string, mac: string): void {
    removeQuietly(join(this.hostDir(host), hexOf(mac)));
  }

  /** The MACs indexed for a host, in order. Some may have no lease any more (skipped by readers, removed by gc). */
  macs(host: string): string[] {
    return namesIn(this.hostDir(host))
      .filter((e) => HEX12_RE.test(e))
      .sort()
      .map(macOfHex);
  }

  /** 'checked': in this boot; 'earlier': holds every lease but was checked in an earlier boot; 'missing': not known to be whole. */
  state(): 'checked' | 'earlier' | 'missing' {
    let text: string | null = null;
    try {
      text = readTextIfExists(join(this.r.hostsDir, MARKER));
    } catch {
      // A marker that cannot be read (a directory in its place) says nothing: readers read every lease.
    }
    return text === null ? 'missing' : text.trim() === bootId() ? 'checked' : 'earlier';
  }

  /**
   * The marker when something that is no regular file is in its place (a directory, a FIFO): a damaged
   * record, named by gc and list and left to the operator. Until it is removed, readers read every lease.
   */
  damaged(): DamagedRecord[] {
    const path = join(this.r.hostsDir, MARKER);
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st || st.isFile()) return [];
    const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : 'not a regular file';
    return [{ key: path, why: damaged('host index marker', path, `${kind}, not a regular file`).message }];
  }

  /**
   * A new store: no lease file yet, so the (empty) index is whole. Not fsynced, as the entries are not: after a
   * power loss the marker is missing (readers read every lease) or names an earlier boot, whatever it holds
   * (an empty one too), so the first gc checks the index again either way. Not written over a damaged marker.
   */
  markNew(): void {
    if (this.damaged().length > 0) return;
    mkdirSync(this.r.hostsDir, { recursive: true, mode: 0o700 });
    this.r.writeAtomic(join(this.r.hostsDir, MARKER), `${bootId()}\n`, { durable: false });
  }

  /**
   * Under the pool lock: an entry for every lease file (a damaged one under `ownHost`: it cannot say whose it
   * is, and this host's gc must report it), entries without a lease removed, old temp files of killed
   * writers swept; then the marker. Reads every lease once.
   */
  rebuild(ownHost: string): void {
    const now = Date.now();
    const indexed = new Set<string>();
    for (const name of namesIn(this.r.leaseDir)) {
      if (name.startsWith(TMP_PREFIX)) {
        sweepIfOld(join(this.r.leaseDir, name), now);
        continue;
      }
      if (!name.endsWith('.json') || !HEX12_RE.test(name.slice(0, 12))) continue;
      const mac = macOfHex(name.slice(0, 12));
      let host = ownHost;
      try {
        host = this.r.readLease(this.r.leasePath(mac))?.host ?? ownHost;
      } catch {
        // damaged: under this host
      }
      this.add(host, mac);
      indexed.add(`${host}/${hexOf(mac)}`);
    }
    for (const host of namesIn(this.r.hostsDir).filter((h) => h !== MARKER && !h.startsWith(TMP_PREFIX))) {
      for (const mac of this.macs(host)) if (!indexed.has(`${host}/${hexOf(mac)}`)) this.remove(host, mac);
    }
    this.markNew();
  }
}

/** Remove a temp file a killed writer left (system/atomic-file.ts sweepTemp). */
export function sweepIfOld(path: string, now = Date.now()): void {
  sweepTemp(path, TMP_MAX_AGE_MS, now);
}
