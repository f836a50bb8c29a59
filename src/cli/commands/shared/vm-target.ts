/** The VM a verb names, by name or UUID: as it is (record + verified processes), or running with a live qemu. */
import { printable, UncloudError, usageError } from '../../../core/errors.js';
import type { Owner } from '../../../core/owner.js';
import { NAME_RE, UUID_RE } from '../../../core/vm-identity.js';
import type { PowerTarget } from '../../../qemu/power.js';
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
  rec: VmRecord;
  qemu: Owner;
  power: PowerTarget;
}

/** The verbs that act on a running VM: it must have a record and a live qemu. */
export function requireRunning(target: string, ctx: Context): RunningVm {
  const vm = findVm(target, ctx.settings.runDir);
  if (!vm?.record || !vm.qemu) {
    throw new UncloudError('NOT_RUNNING', `VM ${target} is not running (no live qemu in ${ctx.settings.runDir})`);
  }
  return { rec: vm.record, qemu: vm.qemu, power: { name: vm.name, qmpSocket: vm.files.qmpSocket, noReboot: vm.record.noReboot ?? false } };
}
