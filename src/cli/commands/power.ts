/** `reboot`, `reset`, `pause`, `resume`: a running VM's power, over uncloud-vm's own QMP socket. */
import { DEFAULT_STOP_TIMEOUT_S } from '../../core/defaults.js';
import type { Context } from '../context.js';
import { requireRunning } from './running-vm.js';
import { parseTimeout } from './start.js';

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
  const { power } = requireRunning(target, ctx);
  const { rebootVm } = await import('../../qemu/power.js');
  const t0 = Date.now();
  const how = await rebootVm(power, { timeoutMs: timeoutS * 1000, progress: ctx.err });
  const s = ((Date.now() - t0) / 1000).toFixed(1);
  ctx.err(how === 'power-cycled' ? `VM ${power.name} powered off after ${s} s and is booting again` : `VM ${power.name} rebooted itself after ${s} s`);
  return 0;
}
