/** What the verbs that act on a running VM share: finding it by name or UUID, with a live qemu. */
import { UncloudError } from '../../core/errors.js';
import type { Owner } from '../../core/owner.js';
import type { PowerTarget } from '../../qemu/power.js';
import type { VmRecord } from '../../system/run-dir.js';
import type { Context } from '../context.js';
import { findVm } from './vm.js';

export interface RunningVm {
  rec: VmRecord;
  qemu: Owner;
  power: PowerTarget;
}

export function requireRunning(target: string, ctx: Context): RunningVm {
  const vm = findVm(target, ctx.settings.runDir);
  if (!vm?.record || !vm.qemu) {
    throw new UncloudError('NOT_RUNNING', `VM ${target} is not running (no live qemu in ${ctx.settings.runDir})`);
  }
  return { rec: vm.record, qemu: vm.qemu, power: { name: vm.name, qmpSocket: vm.files.qmpSocket, noReboot: vm.record.noReboot ?? false } };
}
