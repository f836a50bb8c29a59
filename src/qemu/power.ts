/**
 * The power verbs over uncloud-vm's own QMP socket: pause, resume, a hard reset, and a graceful reboot (ACPI
 * power button with qemu told to pause instead of ending on the power-off, then reset and run: libvirt's
 * "fake reboot"). qemu's actions on power-off and reboot are put back however a verb ends.
 */
import { linkSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { UncloudError } from '../core/errors.js';
import type { Owner } from '../core/owner.js';
import { readTextIfExists } from '../system/atomic-file.js';
import { currentOwner, isOwnerAlive } from '../system/proc.js';
import { exitCodeOf, holdSignals } from './held-signals.js';
import { waitUntil } from './poll.js';
import { PRESS_EVERY_MS } from './stop.js';
import { type QmpClient, type QmpEvent, withQmp } from './qmp.js';

export interface PowerTarget {
  name: string;
  /** uncloud-vm's own QMP socket. */
  qmpSocket: string;
  /** qemu runs with -no-reboot (its reboot action is "shutdown"). */
  noReboot: boolean;
  /** The run dir's reboot mark (core/vm-files.ts rebootMark). */
  rebootMark: string;
}

/** How long qemu has to carry out a reset it was asked for. */
const RESET_WAIT_MS = 10_000;
/**
 * How long the firmware's own reset after ours may take to come: 0.3 s measured under TCG alone, over 10 s
 * beside other TCG guests on 2 cores. Firmware that does no such reset makes a reset verb wait this long.
 */
const FIRMWARE_RESET_WAIT_MS = 60_000;

async function statusOf(qmp: QmpClient): Promise<string> {
  return ((await qmp.execute('query-status')) as { status: string }).status;
}

/** qemu's run state (running, paused, shutdown, prelaunch…) from QMP. */
export function queryStatus(qmpSocket: string): Promise<string> {
  return withQmp(qmpSocket, statusOf);
}

/** What qemu does on the guest's power-off and reboot, as it was started. False when qemu could not be told. */
function restoreActions(qmp: QmpClient, t: PowerTarget): Promise<boolean> {
  return qmp.execute('set-action', { shutdown: 'poweroff', reboot: t.noReboot ? 'shutdown' : 'reset' }).then(
    () => true,
    () => false,
  );
}

/**
 * system_reset, and run the guest's CPUs if `run`. SeaBIOS answers a reset with one of its own (a guest
 * reset) a moment after it runs again; under -no-reboot that one would end qemu, so the caller puts the
 * reboot action back only after it (or after FIRMWARE_RESET_WAIT_MS, for firmware that does not do it).
 */
async function systemReset(qmp: QmpClient, t: PowerTarget, run: boolean): Promise<void> {
  let ours = false;
  let firmware = false;
  const onEvent = (ev: QmpEvent): void => {
    if (ev.event !== 'RESET') return;
    if ((ev.data as { guest?: boolean } | undefined)?.guest) firmware ||= ours;
    else ours = true;
  };
  qmp.on('event', onEvent);
  try {
    await qmp.execute('system_reset');
    if (!(await waitUntil(() => ours, RESET_WAIT_MS))) {
      throw new UncloudError('QEMU_TIMEOUT', `VM ${t.name}: qemu did not carry out the reset within ${RESET_WAIT_MS / 1000} s`);
    }
    if (run) await qmp.execute('cont');
    if (run && t.noReboot) await waitUntil(() => firmware, FIRMWARE_RESET_WAIT_MS);
  } finally {
    qmp.off('event', onEvent);
  }
}

/** Stop the guest's CPUs. Returns false when it was already paused. */
export function pauseVm(t: PowerTarget): Promise<boolean> {
  return withQmp(t.qmpSocket, async (qmp) => {
    if ((await statusOf(qmp)) === 'paused') return false;
    await qmp.execute('stop');
    return true;
  });
}

/** Run the guest's CPUs again. Returns false when it was already running. */
export function resumeVm(t: PowerTarget): Promise<boolean> {
  return withQmp(t.qmpSocket, async (qmp) => {
    if ((await statusOf(qmp)) === 'running') return false;
    await qmp.execute('cont');
    return true;
  });
}

/** Reset now, like the reset button (the guest is not asked). Returns qemu's run state after it. */
export function resetVm(t: PowerTarget): Promise<string> {
  return withQmp(t.qmpSocket, async (qmp) => {
    // Under -no-reboot a reset would end qemu: while it is carried out, a reset is a reset.
    const running = (await statusOf(qmp)) === 'running';
    // Marked as a reboot is: a reset killed, or whose QMP went away, before the action is put back is found
    // and put right by status, stop and gc (settleAbandonedReboot). Without -no-reboot nothing changes.
    if (t.noReboot) writeRebootMark(t);
    await qmp.execute('set-action', { reboot: 'reset' });
    try {
      await systemReset(qmp, t, running);
    } finally {
      if ((await restoreActions(qmp, t)) && t.noReboot) rmSync(t.rebootMark, { force: true });
    }
    return statusOf(qmp);
  });
}

export interface RebootOptions {
  timeoutMs: number;
  progress: (msg: string) => void;
  pressEveryMs?: number;
}

/**
 * Ask the guest to power off (pressing the button again every few seconds), keep qemu when it does, then
 * reset and run it: the guest boots again in the same qemu, with the same MACs and taps.
 */
export function rebootVm(t: PowerTarget, opts: RebootOptions): Promise<'power-cycled' | 'guest-rebooted'> {
  // A signal ends the wait, and qemu's actions are put back before this process ends (see the finally).
  const held = holdSignals();
  return withQmp(t.qmpSocket, async (qmp) => {
    let poweredOff = false;
    let rebooted = false;
    qmp.on('event', (ev: QmpEvent) => {
      const data = ev.data as { guest?: boolean; reason?: string } | undefined;
      if (ev.event === 'SHUTDOWN' && data?.reason === 'guest-shutdown') poweredOff = true;
      if (ev.event === 'RESET' && data?.guest === true) rebooted = true;
    });
    const status = await statusOf(qmp);
    if (status === 'paused') {
      opts.progress(`VM ${t.name} is paused; resuming it so the guest hears the power button`);
      await qmp.execute('cont');
    }
    // The mark first: a reboot killed (SIGKILL) from here on is found by status, stop and gc, which put
    // qemu's actions back, or end the VM when its guest has powered off meanwhile (settleAbandonedReboot).
    writeRebootMark(t);
    await qmp.execute('set-action', { shutdown: 'pause', reboot: 'reset' });
    try {
      await qmp.execute('system_powerdown');
      opts.progress(`VM ${t.name}: ACPI power button pressed; waiting up to ${opts.timeoutMs / 1000} s for the guest to power off`);
      const heard = await waitUntil(() => poweredOff || rebooted || held.signal !== undefined, opts.timeoutMs, {
        every: opts.pressEveryMs ?? PRESS_EVERY_MS,
        tick: (s) => {
          void qmp.execute('system_powerdown').catch(() => undefined);
          opts.progress(`VM ${t.name}: waiting ${s} s / ${opts.timeoutMs / 1000} s; power button pressed again`);
        },
      });
      if (!poweredOff && !rebooted && held.signal !== undefined) {
        throw new UncloudError(
          'INTERRUPTED',
          `${held.signal}: reboot of VM ${t.name} given up; qemu's actions are put back, so if the guest still powers off the VM ends`,
          exitCodeOf(held.signal),
        );
      }
      if (!heard) {
        throw new UncloudError(
          'GUEST_DEAF',
          `VM ${t.name}: the guest did not power off within ${opts.timeoutMs / 1000} s; it runs on unchanged. 'uncloud-vm reset ${t.name}' resets it at once`,
        );
      }
      if (poweredOff) {
        // qemu kept the powered-off VM (paused): reset it and run it again.
        await systemReset(qmp, t, true);
        return 'power-cycled';
      }
      return 'guest-rebooted';
    } finally {
      // The mark goes only once qemu's actions are back (QMP may have gone away): else status, stop or gc do it.
      const back = await restoreActions(qmp, t);
      // A guest that powered off just as the wait was given up stays powered off: it ends as a power-off ends it.
      if ((await statusOf(qmp).catch(() => null)) === 'shutdown') await qmp.execute('quit').catch(() => undefined);
      if (back) rmSync(t.rebootMark, { force: true });
    }
  }).finally(() => held.release());
}

function writeRebootMark(t: PowerTarget): void {
  writeFileSync(t.rebootMark, `${JSON.stringify(currentOwner(process.pid))}\n`);
}

/** The process rebooting the VM, as its mark names it; null when there is no mark (or it cannot be read). */
function rebootMarkOwner(path: string): Owner | null | 'damaged' {
  let text: string | null;
  try {
    // Never a blocking read: a FIFO in the mark's place would hang status, stop and gc.
    text = readTextIfExists(path);
  } catch {
    return null;
  }
  if (text === null) return null;
  try {
    const o = JSON.parse(text) as Owner;
    return typeof o?.pid === 'number' && typeof o.startTime === 'number' ? o : 'damaged';
  } catch {
    return 'damaged';
  }
}

/**
 * What an interrupted reboot left is put right: `ended` when the guest had powered off and qemu was kept
 * paused (it is told to quit, as a power-off ends a VM), `restored` when qemu's actions were still those of
 * a reboot, `rebooting` while a live reboot holds the mark, `none` otherwise. `qemuStatus`, when the caller
 * has it, saves a QMP round trip for a VM with no mark.
 */
export async function settleAbandonedReboot(t: PowerTarget, qemuStatus?: string | null): Promise<'none' | 'rebooting' | 'restored' | 'ended'> {
  const mark = rebootMarkOwner(t.rebootMark);
  if (mark !== null && mark !== 'damaged' && isOwnerAlive(mark)) return 'rebooting';
  if (mark === null && qemuStatus !== undefined && qemuStatus !== 'shutdown') return 'none';
  return withQmp(t.qmpSocket, async (qmp) => {
    const status = await statusOf(qmp);
    let how: 'none' | 'restored' | 'ended' = 'none';
    if (status === 'shutdown') {
      await qmp.execute('quit');
      how = 'ended';
    } else if (mark !== null) {
      if (!(await restoreActions(qmp, t))) return 'none';
      how = 'restored';
    }
    rmSync(t.rebootMark, { force: true });
    return how;
  });
}

type PowerVerb = 'stopped' | 'rebooted';

/** The lock under which a dead holder's power lock is taken over (a proper-lockfile directory beside it). */
const POWER_TAKEOVER_LOCK = 'power.lock.takeover';

/** Who holds a power lock: its owner and what it is doing; null when there is none or it cannot be read. */
function powerLockHolder(path: string): (Owner & { verb?: PowerVerb }) | null {
  try {
    const o = JSON.parse(readTextIfExists(path) ?? 'null') as (Owner & { verb?: PowerVerb }) | null;
    return typeof o?.pid === 'number' && typeof o.startTime === 'number' ? o : null;
  } catch {
    return null;
  }
}

/** Refuse (VM_BUSY) when a live verb holds the power lock at `path`. */
function refuseIfHeld(path: string, name: string): void {
  const holder = powerLockHolder(path);
  if (holder && isOwnerAlive(holder)) {
    throw new UncloudError('VM_BUSY', `VM ${name} is being ${holder.verb ?? 'stopped or rebooted'} by uncloud-vm (pid ${holder.pid}); wait for that to finish, then try again`);
  }
}

/** Link the lock written whole at `tmp` into place: false when one is there already. */
function linkLock(tmp: string, path: string, name: string): boolean {
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // The run dir is gone: the VM ended and was cleaned up meanwhile.
    if (code === 'ENOENT') throw new UncloudError('NOT_RUNNING', `VM ${name} is not running (it ended meanwhile)`);
    throw new UncloudError('VM_BUSY', `VM ${name}: cannot take its power lock ${path}: ${(err as Error).message}`);
  }
}

/**
 * Run `fn` holding the VM's power lock (core/vm-files.ts powerLock): `stop` and `reboot` take a VM through
 * its power-off one at a time. Raced, each undid the other's work: a stop during a reboot's wait made the
 * guest's power-off end qemu while the reboot said it was booting again; a reboot during a stop's wait kept
 * qemu and booted the guest again while the stop then quit it. Now the second is refused at once (VM_BUSY),
 * naming the first. A lock whose holder died (killed) is taken over; the run dir's removal takes it away.
 */
export async function withPowerLock<T>(path: string, name: string, verb: PowerVerb, fn: () => Promise<T>): Promise<T> {
  const me = currentOwner(process.pid);
  // Written whole, then linked into place (fails if one is there): never seen empty, and so never taken for a
  // dead holder's by a second verb reading it between its creation and its content.
  const tmp = `${path}.${process.pid}`;
  try {
    writeFileSync(tmp, `${JSON.stringify({ ...me, verb })}\n`, { mode: 0o600 });
    if (!linkLock(tmp, path, name)) {
      refuseIfHeld(path, name);
      // Its holder died. The dead lock is taken over under a lock of its own: two verbs that both found it dead
      // would otherwise both remove it (the second removing the first's new lock) and both act.
      const { withDirLock } = await import('../system/dir-lock.js');
      await withDirLock(dirname(path), { name: POWER_TAKEOVER_LOCK, what: `the power lock of VM ${name}` }, () => {
        refuseIfHeld(path, name);
        try {
          rmSync(path, { force: true });
        } catch (e) {
          throw new UncloudError('STATE_DAMAGED', `VM ${name}: its power lock ${path} cannot be removed (${(e as Error).message}); remove it by hand`);
        }
        if (!linkLock(tmp, path, name)) {
          refuseIfHeld(path, name);
          throw new UncloudError('VM_BUSY', `VM ${name}: another command took its power lock ${path} meanwhile; try again`);
        }
      });
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  try {
    return await fn();
  } finally {
    if (powerLockHolder(path)?.pid === process.pid) rmSync(path, { force: true });
  }
}
