/**
 * Stopping a VM the way Proxmox does: ACPI power button over QMP (pressed again every few seconds: a guest
 * still booting misses a press), wait up to a timeout for the guest to power off, then QMP quit, then SIGKILL.
 * Without QMP (socket gone or silent), SIGTERM asks qemu itself to quit.
 * The outcome says what really happened: the guest powered off only if qemu said so (a SHUTDOWN event from
 * the guest), not because qemu went away.
 */
import type { Owner } from '../core/owner.js';
import { isOwnerAlive } from '../system/proc.js';
import { waitUntil } from './poll.js';
import { QmpClient, type QmpEvent } from './qmp.js';

export { DEFAULT_STOP_TIMEOUT_S } from '../core/defaults.js';
const QUIT_WAIT_MS = 5000;
/** How often the power button is pressed again while the guest has not powered off. */
export const PRESS_EVERY_MS = 5000;
/** How long a qemu whose QMP closed is given to end by itself before it is sent SIGTERM. */
const GONE_GRACE_MS = 1000;

export interface StopTarget {
  name: string;
  /** uncloud-vm's own QMP socket. */
  qmpSocket: string;
  qemu: Owner;
}

export interface StopOptions {
  timeoutMs: number;
  /** Skip the power button: quit at once. */
  force: boolean;
  progress: (msg: string) => void;
  isAlive?: (o: Owner) => boolean;
  pressEveryMs?: number;
}

/**
 * `ended`: qemu went away while we waited, not by the guest's power-off (see `reason`); `not-running`: it was
 * gone, or going by itself, before this stop reached it.
 */
export type StopOutcome = 'not-running' | 'powered-off' | 'quit' | 'killed' | 'ended';

export interface StopResult {
  outcome: StopOutcome;
  ms: number;
  /** For `ended`: qemu's SHUTDOWN reason (e.g. host-qmp-quit: another QMP client quit it), if it gave one. */
  reason?: string;
}

interface ShutdownData {
  guest: boolean;
  reason: string;
}

export async function stopVm(t: StopTarget, opts: StopOptions): Promise<StopResult> {
  const alive = () => (opts.isAlive ?? isOwnerAlive)(t.qemu);
  const t0 = Date.now();
  const done = (outcome: StopOutcome, reason?: string): StopResult => ({ outcome, ms: Date.now() - t0, ...(reason ? { reason } : {}) });
  if (!alive()) return done('not-running');

  let qmp: QmpClient | null = null;
  try {
    qmp = await QmpClient.connect(t.qmpSocket, 3000);
  } catch (err) {
    // A qemu on its way out (ended by another command, or by its guest) closes QMP first: it is given a
    // moment to finish, so this stop does not claim to have quit a VM it never reached.
    if (await waitUntil(() => !alive(), GONE_GRACE_MS)) return done('not-running');
    opts.progress(`VM ${t.name}: ${(err as Error).message}; asking qemu to quit with SIGTERM`);
  }
  let shutdown: ShutdownData | null = null;
  qmp?.on('event', (ev: QmpEvent) => {
    if (ev.event === 'SHUTDOWN' && !shutdown) shutdown = ev.data as ShutdownData;
  });
  const poweredOff = () => (shutdown as ShutdownData | null)?.reason === 'guest-shutdown';
  const ended = () => done(poweredOff() ? 'powered-off' : 'ended', (shutdown as ShutdownData | null)?.reason);

  try {
    if (qmp && !opts.force) {
      // An interrupted `reboot` may have left "pause on power-off" behind: a power-off must end qemu.
      await qmp.execute('set-action', { shutdown: 'poweroff' }).catch(() => undefined);
      const status = ((await qmp.execute('query-status').catch(() => ({}))) as { status?: string }).status;
      if (status === 'shutdown') {
        // The guest already powered off; qemu was kept (paused) by a reboot in progress.
        shutdown = { guest: true, reason: 'guest-shutdown' };
      } else {
        if (status === 'paused') {
          opts.progress(`VM ${t.name} is paused; resuming it so the guest hears the power button`);
          await qmp.execute('cont').catch(() => undefined);
        }
        // QMP closing or going silent at the press (qemu dying, or hung): as without QMP, SIGTERM below.
        const failed = await qmp.execute('system_powerdown').then(
          (): Error | null => null,
          (err: Error) => err,
        );
        if (failed) {
          if (await waitUntil(() => !alive(), GONE_GRACE_MS)) return ended();
          opts.progress(`VM ${t.name}: ${failed.message}; asking qemu to quit with SIGTERM`);
        }
        if (!failed) {
          opts.progress(`VM ${t.name}: ACPI power button pressed; waiting up to ${opts.timeoutMs / 1000} s for the guest to power off`);
          await waitUntil(() => !alive() || poweredOff(), opts.timeoutMs, {
            every: opts.pressEveryMs ?? PRESS_EVERY_MS,
            tick: (s) => {
              void qmp!.execute('system_powerdown').catch(() => undefined);
              opts.progress(`VM ${t.name}: waiting ${s} s / ${opts.timeoutMs / 1000} s; power button pressed again`);
            },
          });
        } else {
          qmp.close();
          qmp = null;
        }
        if (!alive()) return ended();
      }
      if (qmp) {
        // Powered off: qemu ends by itself in a moment.
        if (poweredOff() && (await waitUntil(() => !alive(), QUIT_WAIT_MS))) return ended();
        if (!poweredOff()) opts.progress(`VM ${t.name}: still running after ${opts.timeoutMs / 1000} s; quitting qemu`);
      }
    }

    if (qmp) await qmp.execute('quit').catch(() => undefined); // qemu may close the socket before it replies
    else signal(t.qemu.pid, 'SIGTERM');
    if (await waitUntil(() => !alive(), QUIT_WAIT_MS)) return done(poweredOff() ? 'powered-off' : 'quit');

    opts.progress(`VM ${t.name}: qemu did not quit; killing it`);
    signal(t.qemu.pid, 'SIGKILL');
    await waitUntil(() => !alive(), QUIT_WAIT_MS);
    return done('killed');
  } finally {
    qmp?.close();
  }
}

const ENDED_BY: Record<string, string> = {
  'host-qmp-quit': 'another QMP client quit qemu',
  'host-signal': 'qemu got a signal',
  'guest-reset': 'the guest rebooted and qemu runs with -no-reboot',
  'guest-panic': 'the guest panicked',
};

/** How a stop ended, for `VM <name> <text> after <n> s`. */
export function stopOutcomeText(r: StopResult): string {
  if (r.outcome === 'ended') return `ended without powering off (${(r.reason && ENDED_BY[r.reason]) ?? r.reason ?? 'qemu went away'})`;
  return { 'not-running': 'was not running', 'powered-off': 'powered off', quit: 'quit', killed: 'was killed' }[r.outcome];
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}
