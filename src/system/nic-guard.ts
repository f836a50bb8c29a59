/**
 * The host side of a VM's NICs that outlives qemu when qemu is killed: its taps and their anti-spoofing
 * rules. ifdown.sh removes both when qemu exits normally; after a SIGKILL (or the OOM killer) nothing runs
 * it, so every cleanup path (launcher exit, stop, hook cleanup, gc) calls removeNicLeftovers here.
 * Synchronous and quiet: it runs on exit paths and must not throw.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { TAP_RE } from '../core/tap-name.js';

/** Taps of uncloud VMs that exist in this network namespace. */
export function listTaps(): string[] {
  try {
    return readdirSync('/sys/class/net').filter((n) => TAP_RE.test(n));
  } catch {
    return [];
  }
}

/** Taps whose anti-spoofing rules are installed in this network namespace. */
export function listGuardedTaps(): string[] {
  const r = spawnSync('nft', ['list', 'tables', 'bridge'], { encoding: 'utf8' });
  if (r.status !== 0) return [];
  const out: string[] = [];
  for (const m of r.stdout.matchAll(/^table bridge uc_(\S+)$/gm)) if (TAP_RE.test(m[1]!)) out.push(m[1]!);
  return out;
}

/** Remove a NIC's anti-spoofing rules. Idempotent. */
export function removeNicGuard(tap: string): void {
  if (!TAP_RE.test(tap)) return;
  spawnSync('nft', ['delete', 'table', 'bridge', `uc_${tap}`], { stdio: 'ignore' });
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
