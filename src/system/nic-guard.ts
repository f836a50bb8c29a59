/**
 * The host side of a VM's NICs that outlives qemu when qemu is killed: its taps and their guard (elements
 * keyed by the tap in the shared nft table, see core/nic-guard-rules.ts). ifdown.sh removes both when qemu
 * exits normally; after a SIGKILL (or the OOM killer) nothing runs it, so every cleanup path (launcher exit,
 * stop, hook cleanup, gc) calls removeNicLeftovers here.
 * ifup.sh marks a tap in the run dir (guardMarkPath) before it installs the tap's guard, and ifdown.sh
 * unmarks it once the guard is gone: a claim runs nft for a tap only when it is marked (removeStaleGuard).
 * Synchronous and quiet: it runs on exit paths and must not throw.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { GUARD_IFACE_RE, GUARD_TABLE, guardedIfaces, removalJson } from '../core/nic-guard-rules.js';
import { TAP_RE } from '../core/tap-name.js';

/** Taps of uncloud VMs that exist in this network namespace. */
export function listTaps(): string[] {
  try {
    return readdirSync('/sys/class/net').filter((n) => TAP_RE.test(n));
  } catch {
    return [];
  }
}

function listGuardTable(): string | null {
  try {
    const r = spawnSync('nft', ['-j', 'list', 'table', 'bridge', GUARD_TABLE], { encoding: 'utf8', maxBuffer: 256 * 2 ** 20 });
    return r.status === 0 ? r.stdout : null;
  } catch {
    return null;
  }
}

/** Taps whose guard is installed in this network namespace. */
export function listGuardedTaps(): string[] {
  const json = listGuardTable();
  return json === null ? [] : guardedIfaces(json).filter((t) => TAP_RE.test(t));
}

/**
 * Run an `nft -j` batch. nft reads `-f -` by opening /dev/stdin, which fails (ENXIO) when stdin is a socket,
 * as node's pipes are: `cat` passes it on through a real pipe. No temp file, so a process killed meanwhile
 * leaves nothing behind.
 */
function runNftBatch(batch: string): boolean {
  try {
    return spawnSync('sh', ['-c', 'cat | nft -j -f -'], { input: batch, stdio: ['pipe', 'ignore', 'ignore'] }).status === 0;
  } catch {
    return false;
  }
}

/**
 * Remove an interface's guard, all of it in one nft batch. Idempotent; never throws. Returns false when
 * some of it may be left (nft refused the batch twice).
 */
export function removeGuard(iface: string): boolean {
  if (!GUARD_IFACE_RE.test(iface)) return true;
  // A concurrent removal can take an element between our listing and our batch: list again once.
  for (let attempt = 0; attempt < 2; attempt++) {
    const json = listGuardTable();
    const batch = json === null ? null : removalJson(json, iface);
    if (batch === null) return true;
    if (runNftBatch(batch)) return true;
  }
  return false;
}

/** Remove a NIC's guard (the tap of an uncloud VM). Idempotent; never throws. */
export function removeNicGuard(tap: string): boolean {
  return TAP_RE.test(tap) ? removeGuard(tap) : true;
}

/** The file ifup.sh creates before it installs a tap's guard, and ifdown.sh removes after it removed it. */
export const guardMarkPath = (runDir: string, tap: string): string => join(runDir, '.guards', tap);

/**
 * Remove the guard a killed qemu may have left on this tap, then its mark: only when the tap is marked, or
 * `known` (a dead run of the VM had it: its ifup may predate the marks), so a claim spawns no nft when there
 * can be nothing to remove.
 */
export function removeStaleGuard(runDir: string, tap: string, known = false): void {
  const mark = guardMarkPath(runDir, tap);
  if (!known && !existsSync(mark)) return;
  if (removeNicGuard(tap)) rmSync(mark, { force: true });
}

/** Remove a tap (and so its bridge port). Idempotent. */
export function removeTap(tap: string): void {
  if (!TAP_RE.test(tap)) return;
  spawnSync('ip', ['link', 'delete', 'dev', tap], { stdio: 'ignore' });
}

/** Everything a dead VM's NICs may have left on the host. */
export function removeNicLeftovers(taps: string[]): void {
  for (const tap of taps) {
    removeTap(tap);
    removeNicGuard(tap);
  }
}
