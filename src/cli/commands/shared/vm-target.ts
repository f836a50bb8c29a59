/** The VM a verb names, by name or UUID: as it is (record + verified processes), or running with a live qemu. */
import { existsSync } from 'node:fs';
import { printable, UncloudError, usageError } from '../../../core/errors.js';
import type { Owner } from '../../../core/owner.js';
import { NAME_RE, UUID_RE } from '../../../core/vm-identity.js';
import type { PowerTarget } from '../../../qemu/power.js';
import { processCmdline } from '../../../system/proc.js';
import type { VmRecord } from '../../../system/run-dir.js';
import { type ObservedVm, observeAll, observeVm } from '../../../system/vm-state.js';
import type { Context } from '../../context.js';

export function checkTarget(target: string): void {
  if (!NAME_RE.test(target) && !UUID_RE.test(target)) {
    throw usageError(`invalid VM '${printable(target)}': expected a VM name or UUID`);
  }
}

/** A VM by name or UUID as it really is (record + verified processes), or null when it has no run dir. */
export function findVm(target: string, runDir: string): ObservedVm | null {
  checkTarget(target);
  if (NAME_RE.test(target)) {
    const vm = observeVm(runDir, target);
    // A damaged record does not hide a running qemu (found through its pidfile): it can still be stopped.
    if (vm.record || vm.qemu) return vm;
  }
  if (UUID_RE.test(target)) {
    const uuid = target.toLowerCase();
    return observeAll(runDir).find((v) => v.record?.uuid === uuid) ?? null;
  }
  return null;
}

export interface RunningVm {
  name: string;
  /** Its record; null when the record is damaged (the VM was found through its pidfile). */
  rec: VmRecord | null;
  qemu: Owner;
  power: PowerTarget;
  /** Held while `stop` or `reboot` acts on it. */
  powerLock: string;
  /** Its console socket: null when the console is on the terminal of its `start --console`; undefined when unknown. */
  consoleSocket: string | null | undefined;
}

/**
 * The verbs that act on a running VM: it must have a live qemu. A damaged record does not hide it (status and
 * stop find it through its pidfile too): the verb acts on the VM's own sockets and says the record is damaged.
 */
export function requireRunning(target: string, ctx: Context): RunningVm {
  const vm = findVm(target, ctx.settings.runDir);
  if (!vm?.qemu) {
    throw new UncloudError('NOT_RUNNING', `VM ${target} is not running (no live qemu in ${ctx.settings.runDir})`);
  }
  const rec = vm.record;
  if (!rec) ctx.err(`note: VM ${vm.name}: its record ${vm.files.record} is damaged (${vm.damaged}); acting through its pidfile and sockets`);
  const noReboot = rec ? (rec.noReboot ?? false) : (processCmdline(vm.qemu.pid)?.includes('-no-reboot') ?? false);
  const consoleSocket = rec ? rec.consoleSocket : existsSync(vm.files.consoleSocket) ? vm.files.consoleSocket : null;
  return { name: vm.name, rec, qemu: vm.qemu, power: { name: vm.name, qmpSocket: vm.files.qmpSocket, noReboot, rebootMark: vm.files.rebootMark }, powerLock: vm.files.powerLock, consoleSocket };
}

/** After qemu is gone: a live launcher gives everything back itself (waited for briefly); otherwise we do. */
export async function cleanupAfterQemu(name: string, ctx: Context): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (observeVm(ctx.settings.runDir, name).launcher && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const { cleanupVm } = await import('../../../qemu/reconcile.js');
  await cleanupVm(await ctx.store(), ctx.settings.runDir, ctx.settings.host, name, true);
}
