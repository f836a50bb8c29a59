/**
 * Stopping a VM the way Proxmox does: ACPI power button over QMP, wait up to a timeout for qemu to exit,
 * then QMP quit, then SIGKILL. Without QMP (socket gone), SIGTERM asks qemu itself to quit.
 */
import type { Owner } from '../core/owner.js';
import { isOwnerAlive } from '../system/proc.js';
import { QmpClient } from './qmp.js';

export { DEFAULT_STOP_TIMEOUT_S } from '../core/defaults.js';
const QUIT_WAIT_MS = 5000;
const PROGRESS_EVERY_MS = 5000;

export interface StopTarget {
  name: string;
  qmpSocket: string;
  qemu: Owner;
}

export interface StopOptions {
  timeoutMs: number;
  /** Skip the power button: quit at once. */
  force: boolean;
  progress: (msg: string) => void;
  isAlive?: (o: Owner) => boolean;
}

export type StopOutcome = 'not-running' | 'powered-off' | 'quit' | 'killed';

export async function stopVm(t: StopTarget, opts: StopOptions): Promise<{ outcome: StopOutcome; ms: number }> {
  const alive = opts.isAlive ?? isOwnerAlive;
  const t0 = Date.now();
  const done = (outcome: StopOutcome) => ({ outcome, ms: Date.now() - t0 });
  if (!alive(t.qemu)) return done('not-running');

  if (!opts.force) {
    let asked = false;
    try {
      const qmp = await QmpClient.connect(t.qmpSocket, 3000);
      try {
        await qmp.execute('system_powerdown');
        asked = true;
      } finally {
        qmp.close();
      }
      opts.progress(`VM ${t.name}: ACPI power button pressed; waiting up to ${opts.timeoutMs / 1000} s for the guest to power off`);
    } catch (err) {
      opts.progress(`VM ${t.name}: ${(err as Error).message}; asking qemu to quit with SIGTERM`);
      signal(t.qemu.pid, 'SIGTERM');
      asked = true;
    }
    if (asked && (await waitGone(t, alive, opts.timeoutMs, opts.progress))) return done('powered-off');
    opts.progress(`VM ${t.name}: still running after ${opts.timeoutMs / 1000} s; quitting qemu`);
  }

  try {
    const qmp = await QmpClient.connect(t.qmpSocket, 3000);
    try {
      await qmp.execute('quit').catch(() => undefined); // qemu may close the socket before it replies
    } finally {
      qmp.close();
    }
  } catch {
    signal(t.qemu.pid, 'SIGTERM');
  }
  if (await waitGone(t, alive, QUIT_WAIT_MS)) return done('quit');

  opts.progress(`VM ${t.name}: qemu did not quit; killing it`);
  signal(t.qemu.pid, 'SIGKILL');
  await waitGone(t, alive, QUIT_WAIT_MS);
  return done('killed');
}

async function waitGone(t: StopTarget, alive: (o: Owner) => boolean, ms: number, progress?: (m: string) => void): Promise<boolean> {
  const start = Date.now();
  let nextReport = start + PROGRESS_EVERY_MS;
  while (Date.now() - start < ms) {
    if (!alive(t.qemu)) return true;
    if (progress && Date.now() >= nextReport) {
      progress(`VM ${t.name}: waiting ${Math.round((Date.now() - start) / 1000)} s / ${ms / 1000} s`);
      nextReport += PROGRESS_EVERY_MS;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return !alive(t.qemu);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}
