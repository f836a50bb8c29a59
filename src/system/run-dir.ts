/**
 * VMs' run directories: <runDir>/<name>/ holds everything of one running VM (vm.json, scripts, pidfile,
 * QMP socket, serial log), so no VM's file can collide with another's. A run dir is claimed under a lock
 * on the run dir root and appears complete: it is built as <runDir>/.staging-*, record included, and
 * renamed into place, so a run dir never exists without its record.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { NicAddresses } from '../core/nic-allowed.js';
import type { Owner } from '../core/owner.js';
import type { VmRunFiles } from '../core/vm-files.js';
import { readTextIfExists, writeFileAtomic } from './atomic-file.js';
import { withDirLock } from './dir-lock.js';
import { ensurePrivateDir } from './private-dir.js';

export interface VmRecord {
  version: 1;
  name: string;
  uuid: string;
  /** The uncloud-vm process that prepared the VM and, in the foreground, supervises it. */
  launcher: Owner | null;
  /** qemu, recorded before it may run (the launcher holds it at a gate until then). */
  qemu: Owner | null;
  /** 'unit': systemd runs qemu; between ExecStartPre and ExecStart nothing of ours runs. */
  managedBy: 'launcher' | 'unit';
  /** Tap names reserved for the NICs at claim time. */
  taps: string[];
  /** The bridges its NICs go on, known at claim time (before nics is filled): `network rm` sees a starting VM. */
  bridges?: string[];
  /** Filled once the MACs are leased; addresses: the NIC's IPv6 addresses and guard (absent in records of older versions). */
  nics: { index: number; mac: string; tap: string; bridge: string; addresses?: NicAddresses }[];
  started: string;
  /** uncloud-vm's own QMP socket. */
  qmpSocket: string;
  /** The QMP socket left for the operator (records of older versions have none). */
  operatorQmpSocket?: string;
  /** The serial console socket; null when the console is on the launcher's terminal (--console). */
  consoleSocket?: string | null;
  serialLog: string;
  /** qemu runs with -no-reboot: the power verbs put that back after a reset. */
  noReboot?: boolean;
}

/** Entries of the run dir root that are ours but no VM: the claim lock and run dirs being built. */
export const STAGING_PREFIX = '.staging-';
const CLAIM_LOCK = '.claim.lock';
/** A staging dir older than this was left by a launcher killed while claiming. */
export const STAGING_MAX_AGE_MS = 60_000;

export type RecordRead = { record: VmRecord; damaged: null } | { record: null; damaged: string | null };

/** A VM's record: null with damaged=null when there is none, with a reason when it cannot be read. */
export function readRecord(path: string): RecordRead {
  let text: string | null;
  try {
    text = readTextIfExists(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Named plainly: ENOTREG is no errno an operator could look up.
    const why = code === 'EISDIR' ? 'a directory' : code === 'ENOTREG' ? 'not a regular file' : (code ?? (err as Error).message);
    return { record: null, damaged: `cannot be read (${why})` };
  }
  if (text === null) return { record: null, damaged: null };
  try {
    const data = JSON.parse(text) as Partial<VmRecord>;
    if (data.version !== 1) return { record: null, damaged: `version ${JSON.stringify(data.version)}, this uncloud-vm reads 1` };
    if (typeof data.name !== 'string' || typeof data.uuid !== 'string' || !Array.isArray(data.nics)) {
      return { record: null, damaged: 'missing name, uuid or nics' };
    }
    return { record: { managedBy: 'launcher', taps: data.nics.map((n) => n.tap), ...data } as VmRecord, damaged: null };
  } catch {
    return { record: null, damaged: 'not valid JSON' };
  }
}

/** Names of the VMs that have a run dir. */
export function runDirNames(runDir: string): string[] {
  try {
    // Only real directories: a stray file, or a symlink or copy an operator made, is not a VM of ours.
    return readdirSync(runDir, { withFileTypes: true })
      .filter((e) => !e.name.startsWith('.') && e.isDirectory())
      .map((e) => e.name);
  } catch {
    return [];
  }
}

/**
 * Staging dirs a launcher killed mid-claim left behind. A claim makes and renames its staging dir under the
 * claim lock: whoever holds that lock knows every staging dir is a dead claim's, whatever its age (maxAgeMs 0).
 */
export function oldStagingDirs(runDir: string, now = Date.now(), maxAgeMs = STAGING_MAX_AGE_MS): string[] {
  let entries: string[];
  try {
    entries = readdirSync(runDir).filter((e) => e.startsWith(STAGING_PREFIX));
  } catch {
    return [];
  }
  return entries.map((e) => join(runDir, e)).filter((p) => now - (mtimeOf(p) ?? now) >= maxAgeMs);
}

export function mtimeOf(path: string): number | null {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return null;
  }
}

/** Run fn while holding the run dir root's claim lock (claims, and gc's removal of dead VMs' dirs). */
export function withRunDirLock<T>(runDir: string, fn: () => T | Promise<T>): Promise<T> {
  ensurePrivateDir(runDir);
  return withDirLock(runDir, { name: CLAIM_LOCK, what: `run dir ${runDir}` }, fn);
}

/**
 * Create files.dir with its record in one step (inside the claim lock). The record is written plainly into the
 * staging dir, which nobody reads: the dir appears, by its rename, only once the record is whole.
 */
export function createRunDir(runDir: string, files: VmRunFiles, rec: VmRecord): void {
  const staging = mkdtempSync(join(runDir, STAGING_PREFIX));
  try {
    writeFileSync(join(staging, 'vm.json'), `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
    renameSync(staging, files.dir);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Replace a VM's record atomically, not fsynced: it describes processes of this boot (the run dir is on tmpfs
 * by default). After a power loss an old, empty or missing record is a dead VM's: gc removes its run dir and
 * frees its leases by their owners, who died with the boot (test/cli/crash-paths.test.ts).
 */
export function writeRecord(files: VmRunFiles, rec: VmRecord): void {
  writeFileAtomic(files.record, `${JSON.stringify(rec, null, 2)}\n`, 0o600, undefined, { durable: false });
}

export function writeScript(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o700 });
  chmodSync(path, 0o700);
}

let removals = 0;

/**
 * Remove a run dir at once: renamed to a staging name first, then deleted, so a process killed meanwhile
 * leaves no half run dir (a record-less one would count as starting for a while) but a staging dir, which
 * the next gc removes.
 */
export function removeDir(path: string): void {
  let doomed = path;
  if (!basename(path).startsWith(STAGING_PREFIX)) {
    removals += 1;
    doomed = join(dirname(path), `${STAGING_PREFIX}gone-${process.pid}-${removals}`);
    try {
      renameSync(path, doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      doomed = path;
    }
  }
  rmSync(doomed, { recursive: true, force: true });
}

export function ensureDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
}
