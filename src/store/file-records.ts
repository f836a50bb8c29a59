/**
 * The file store's directory and how its records are read. Shared by the store (file-store.ts), its
 * allocation scan (file-scan.ts), its held counts (file-tally.ts) and its host index (file-host-index.ts).
 *
 *   <dir>/pool.json             cursors and held counts per prefix (file-tally.ts)
 *   <dir>/leases/<12 hex>.json  one file per held address, created exclusively (link of a complete temp file)
 *   <dir>/hosts/<host>/<12 hex> the host index: an empty file per lease recorded for <host> (file-host-index.ts)
 *   <dir>/conflicts/<12 hex>.json, <dir>/vms/<name>.json, <dir>/tmp/ (temp files of lease claims)
 *   <dir>/pool.lock/            proper-lockfile's lock, serialising every change of leases, cursors and counts
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { indexOf, inPool, MAC_TEXT_RE, parseMac, type Pool } from '../core/mac.js';
import { type AtomicWriteOptions, readTextIfExists, type StagedFile, stageFile, TMP_PREFIX, writeFileAtomic } from '../system/atomic-file.js';
import { ensurePrivateDir } from '../system/private-dir.js';
import { type FileText, fileText, readFileText, type TextPage } from './file-lease-pages.js';
import { damaged, parseLease, parseRecord } from './lease.js';
import { FIRST_CURSOR } from './policy.js';
import type { DamagedRecord, Lease, LeasePage } from './store.js';

export interface PoolFile {
  version: 1;
  cursors: Record<string, string>;
  /** Held addresses per prefix (hex), not counting the `pending` ones (file-tally.ts). Absent: not counted yet. */
  held?: Record<string, number>;
  /** MACs whose lease a change under the lock was creating or removing: each counts when its file exists. */
  pending?: string[];
}

/** pool.json's text. */
export const poolText = (file: PoolFile): string => `${JSON.stringify(file)}\n`;

/** 12 hex digits: a lease's file name and index entry. */
export const hexOf = (mac: string): string => mac.replaceAll(':', '');
export const HEX12_RE = /^[0-9a-f]{12}$/;
const macOfHex = (hex: string): string => hex.match(/../g)!.join(':');
export { macOfHex };


export class FileRecords {
  readonly leaseDir: string;
  readonly poolPath: string;
  readonly hostsDir: string;
  readonly conflictDir: string;
  readonly vmsDir: string;
  readonly tmpDir: string;
  private ready = false;
  /** Run when the store's lease directory is made (a new store: nothing is held); the host index marks itself whole. */
  onNew: () => void = () => undefined;

  constructor(readonly dir: string) {
    this.leaseDir = join(dir, 'leases');
    this.poolPath = join(dir, 'pool.json');
    this.hostsDir = join(dir, 'hosts');
    this.conflictDir = join(dir, 'conflicts');
    this.vmsDir = join(dir, 'vms');
    this.tmpDir = join(dir, 'tmp');
  }

  leasePath(mac: string): string {
    return join(this.leaseDir, `${hexOf(mac)}.json`);
  }

  exists(mac: string): boolean {
    try {
      lstatSync(this.leasePath(mac));
      return true;
    } catch {
      return false;
    }
  }

  /** Names of the lease files (12 hex + .json), unsorted. */
  leaseNames(): string[] {
    return namesIn(this.leaseDir).filter((e) => e.endsWith('.json') && !e.startsWith(TMP_PREFIX));
  }

  /** A lease file, or null when it vanished meanwhile. A damaged one is an error naming the file. */
  readLease(path: string): Lease | null {
    const text = readFileText(path);
    return text === null ? null : parseLease(text, path);
  }

  /** As readLease, but a damaged record reads as null: gc and error messages go on past it. */
  readLeaseQuietly(path: string): Lease | null {
    try {
      return this.readLease(path);
    } catch {
      return null;
    }
  }

  readPoolFile(): PoolFile {
    const text = readRecordText('state file', this.poolPath);
    if (text === null) return { version: 1, cursors: {} };
    const d = parseRecord<PoolFile>(text, 'state file', this.poolPath);
    const bad = (why: string) => damaged('state file', this.poolPath, why);
    if (typeof d.cursors !== 'object' || d.cursors === null) throw bad('no cursors object');
    for (const [prefix, cursor] of Object.entries(d.cursors)) {
      if (typeof cursor !== 'string' || !MAC_TEXT_RE.test(cursor)) throw bad(`bad cursor for prefix ${prefix}`);
    }
    const out: PoolFile = { version: 1, cursors: { ...d.cursors } };
    if (d.held !== undefined) {
      if (typeof d.held !== 'object' || d.held === null || !Object.values(d.held).every((n) => Number.isInteger(n) && n >= 0)) throw bad('bad held counts');
      out.held = { ...d.held };
    }
    if (d.pending !== undefined) {
      if (!Array.isArray(d.pending) || !d.pending.every((m) => typeof m === 'string' && MAC_TEXT_RE.test(m))) throw bad('bad pending list');
      out.pending = [...d.pending];
    }
    return out;
  }

  /** A damaged pool file stops allocations (it names itself), not releases: there are no counts to keep then. */
  readPoolFileIfReadable(): PoolFile | null {
    try {
      return this.readPoolFile();
    } catch {
      return null;
    }
  }

  writePoolFile(file: PoolFile): void {
    this.writeAtomic(this.poolPath, poolText(file));
  }

  /** A record's new content in a temp file in tmpDir, not fsynced nor in place yet (system/atomic-file.ts stageFile). */
  stage(path: string, data: string): StagedFile {
    if (!this.ready) mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 });
    return stageFile(path, data, 0o600, this.tmpDir);
  }

  /**
   * Replace a record atomically, its temp file in tmpDir: the one place gc looks for what killed writers left.
   * Fsynced unless `durable: false` (a record that a power loss leaves right whatever state it leaves it in).
   */
  writeAtomic(path: string, data: string, opts?: AtomicWriteOptions): void {
    if (!this.ready) mkdirSync(this.tmpDir, { recursive: true, mode: 0o700 });
    writeFileAtomic(path, data, 0o600, this.tmpDir, opts);
  }

  /** The cursor's index in a pool; a new pool starts at suffix 1. */
  cursorOf(file: PoolFile, pool: Pool): number {
    const text = file.cursors[pool.prefix];
    if (text === undefined) return FIRST_CURSOR;
    const mac = parseMac(text);
    if (!inPool(pool, mac)) throw damaged('state file', this.poolPath, `the cursor ${text} of prefix ${pool.prefix} lies outside it`);
    return indexOf(pool, mac);
  }

  /** Read one lease file into `leases`, or into `damagedRecords` when it cannot be read; nothing when it is gone. */
  readLeaseInto(path: string, leases: Lease[], damagedRecords: DamagedRecord[]): void {
    leaseOfText(path, fileText(path), leases, damagedRecords);
  }

  dirExists(): boolean {
    try {
      return statSync(this.dir).isDirectory();
    } catch {
      return false;
    }
  }

  /** Create the state directories (0700) on first write; refuse one others could write to. */
  ensureDirs(): void {
    if (this.ready) return;
    ensurePrivateDir(this.dir);
    if (!existsSync(this.leaseDir)) this.onNew();
    for (const d of [this.leaseDir, this.tmpDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
    this.ready = true;
  }
}

/** Entries of a directory; none when it does not exist. */
export function namesIn(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * A lease file's text (file-lease-pages.ts) into `leases` (then true), or into `damagedRecords`; nothing when
 * it is gone.
 */
export function leaseOfText(path: string, text: FileText, leases: Lease[], damagedRecords: DamagedRecord[]): boolean {
  if (text === null) return false;
  if (typeof text !== 'string') {
    // The error of a read (EISDIR, EIO) does not name the file: the line must, or the operator cannot find it.
    damagedRecords.push({ key: path, why: damaged('lease', path, `cannot be read: ${text.error}`).message });
    return false;
  }
  try {
    leases.push(parseLease(text, path));
    return true;
  } catch (err) {
    damagedRecords.push({ key: path, why: (err as Error).message });
    return false;
  }
}

/** A page of lease files (file-lease-pages.ts) in `dir`: its leases, its damaged records, and the leases printed lined up with them. */
export function leasePageOf(dir: string, read: TextPage): LeasePage {
  const page: LeasePage = { leases: [], damaged: [] };
  const json: (string | null)[] | undefined = read.json && (page.json = []);
  read.texts.forEach((text, i) => {
    if (leaseOfText(`${dir}/${read.names[i]}`, text, page.leases, page.damaged)) json?.push(read.json![i] ?? null);
  });
  return page;
}

/**
 * A record file's text (null: there is none). One that cannot be read (a directory or a FIFO in its place,
 * an I/O error) is a damaged record, named, as one that cannot be parsed is.
 */
export function readRecordText(what: string, path: string): string | null {
  try {
    return readTextIfExists(path);
  } catch (err) {
    throw damaged(what, path, `cannot be read: ${(err as Error).message}`);
  }
}
