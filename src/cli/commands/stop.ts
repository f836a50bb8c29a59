/** `uncloud-vm stop <vm>`: ACPI power button over QMP, wait, then quit, then kill; then give back what it held. */
import type { Command } from 'commander';
import { DEFAULT_STOP_TIMEOUT_S } from '../../core/defaults.js';
import { UncloudError } from '../../core/errors.js';
import type { Context } from '../context.js';
import type { Action } from './shared/action.js';
import { examples } from './shared/help.js';
import { parseTimeout } from './shared/timeout.js';
import { cleanupAfterQemu, findVm } from './shared/vm-target.js';

export function define(program: Command, action: Action): void {
  program
    .command('stop')
    .description('stop a VM gracefully: ACPI power button, wait, then quit, then kill')
    .argument('<vm>', 'VM name or UUID')
    .option('--timeout <s>', 'seconds to wait for the guest to power off', String(DEFAULT_STOP_TIMEOUT_S))
    .option('--force', 'do not wait for the guest: quit qemu at once')
    .addHelpText('after', examples('uncloud-vm stop web1', 'uncloud-vm stop web1 --timeout 120', 'uncloud-vm stop web1 --force'))
    .action(action((a, o, ctx) => stop(a[0]!, o, ctx)));
}

export async function stop(target: string, flags: { timeout?: string; force?: boolean }, ctx: Context): Promise<number> {
  const timeoutS = parseTimeout(flags.timeout ?? String(DEFAULT_STOP_TIMEOUT_S), '--timeout');
  const vm = findVm(target, ctx.settings.runDir);
  if (!vm || !vm.qemu) {
    if (vm) await cleanupAfterQemu(vm.name, ctx);
    throw new UncloudError('NOT_RUNNING', `VM ${target} is not running (no live qemu in ${ctx.settings.runDir})`);
  }
  const qemu = vm.qemu;
  const { stopVm, stopOutcomeText } = await import('../../qemu/stop.js');
  const { withPowerLock } = await import('../../qemu/power.js');
  const r = await withPowerLock(vm.files.powerLock, vm.name, 'stopped', () =>
    stopVm({ name: vm.name, qmpSocket: vm.files.qmpSocket, qemu }, { timeoutMs: timeoutS * 1000, force: flags.force ?? false, progress: ctx.err }),
  );
  await cleanupAfterQemu(vm.name, ctx);
  // Ended before this stop reached it (by itself, or by another command): as for a VM found not running.
  if (r.outcome === 'not-running') throw new UncloudError('NOT_RUNNING', `VM ${vm.name} is not running (its qemu ended before this stop reached it)`);
  ctx.err(`VM ${vm.name} ${stopOutcomeText(r)} after ${(r.ms / 1000).toFixed(1)} s`);
  return 0;
}
