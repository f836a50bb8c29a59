/** `reboot`, `reset`, `pause`, `resume`: a running VM's power, over uncloud-vm's own QMP socket. */
import { DEFAULT_STOP_TIMEOUT_S } from '../../core/defaults.js';
import type { Context } from '../context.js';
import { parseTimeout } from './shared/timeout.js';
import { requireRunning } from './shared/vm-target.js';
import type { Command } from 'commander';
import type { Action } from './shared/action.js';

export function define(program: Command, action: Action): void {
  const power = (name: string, description: string, example: string, verb: (target: string, ctx: Context) => Promise<number>) =>
    program
      .command(name)
      .description(description)
      .argument('<vm>', 'VM name or UUID')
      .addHelpText('after', `\nExamples:\n  ${example}`)
      .action(action((a, _o, ctx) => verb(a[0]!, ctx)));
  program
    .command('reboot')
    .description('reboot a VM gracefully: ACPI power button, and when the guest has powered off, boot it again in the same qemu')
    .argument('<vm>', 'VM name or UUID')
    .option('--timeout <s>', 'seconds to wait for the guest to power off', String(DEFAULT_STOP_TIMEOUT_S))
    .addHelpText(
      'after',
      `
The VM keeps its qemu, MACs and taps. A guest that does not power off within --timeout is left running as
it was; 'uncloud-vm reset' resets it at once.

Examples:
  uncloud-vm reboot web1
  uncloud-vm reboot web1 --timeout 120`,
    )
    .action(action((a, o, ctx) => reboot(a[0]!, o, ctx)));
  power('reset', 'reset a VM at once, like its reset button (the guest is not asked)', 'uncloud-vm reset web1', reset);
  power('pause', "stop a VM's CPUs; it keeps its memory, MACs and taps", 'uncloud-vm pause web1', pause);
  power('resume', "run a paused VM's CPUs again", 'uncloud-vm resume web1', resume);
}

export async function pause(target: string, ctx: Context): Promise<number> {
  const { power } = requireRunning(target, ctx);
  const { pauseVm } = await import('../../qemu/power.js');
  ctx.err((await pauseVm(power)) ? `VM ${power.name} paused; 'uncloud-vm resume ${power.name}' runs it again` : `VM ${power.name} was already paused`);
  return 0;
}

export async function resume(target: string, ctx: Context): Promise<number> {
  const { power } = requireRunning(target, ctx);
  const { resumeVm } = await import('../../qemu/power.js');
  ctx.err((await resumeVm(power)) ? `VM ${power.name} resumed` : `VM ${power.name} was already running`);
  return 0;
}

export async function reset(target: string, ctx: Context): Promise<number> {
  const { power } = requireRunning(target, ctx);
  const { resetVm } = await import('../../qemu/power.js');
  const state = await resetVm(power);
  ctx.err(state === 'running' ? `VM ${power.name} reset` : `VM ${power.name} reset; it stays stopped (${state}) until 'uncloud-vm resume ${power.name}'`);
  return 0;
}

export async function reboot(target: string, flags: { timeout?: string }, ctx: Context): Promise<number> {
  const timeoutS = parseTimeout(flags.timeout ?? String(DEFAULT_STOP_TIMEOUT_S), '--timeout');
  const { power, powerLock } = requireRunning(target, ctx);
  const { rebootVm, withPowerLock } = await import('../../qemu/power.js');
  const t0 = Date.now();
  const how = await withPowerLock(powerLock, power.name, 'rebooted', () => rebootVm(power, { timeoutMs: timeoutS * 1000, progress: ctx.err }));
  const s = ((Date.now() - t0) / 1000).toFixed(1);
  ctx.err(how === 'power-cycled' ? `VM ${power.name} powered off after ${s} s and is booting again` : `VM ${power.name} rebooted itself after ${s} s`);
  return 0;
}
