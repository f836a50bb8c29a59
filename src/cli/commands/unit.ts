/** `uncloud-vm unit <name>`: a systemd unit per VM, printed or installed. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { UncloudError } from '../../core/errors.js';
import { systemdExecWord, systemdValue } from '../../core/quote.js';
import { nicText, planVm, type VmPlan, vmRunFiles } from '../../core/vm-spec.js';
import { writeFileAtomic } from '../../system/atomic-file.js';
import { hostFacts } from '../../system/host.js';
import { systemctl, unitDir, unitName } from '../../system/systemd.js';
import { loadTemplate, render } from '../../system/templates.js';
import type { Context } from '../context.js';
import { selfCommand } from '../self.js';
import { checkNicMacs, parseTimeout, resolveMedia, type StartFlags, uuidSource } from './start.js';

export interface UnitFlags extends StartFlags {
  user?: boolean;
  install?: boolean;
  enable?: boolean;
}

/** The plan as `start` options, normalised, so the unit's ExecStartPre rebuilds exactly this VM. */
export function startArgs(plan: VmPlan, accel: string): string[] {
  const args = ['--name', plan.name, '--uuid', plan.uuid, '--memory', String(plan.memoryMiB), '--cores', String(plan.cores)];
  args.push('--accel', accel, '--machine', plan.machine, '--qemu', plan.qemu);
  for (const nic of plan.nics) args.push('--nic', nicText(nic));
  if (plan.cdrom !== undefined) args.push('--cdrom', plan.cdrom);
  for (const d of plan.disks) args.push('--disk', d);
  if (plan.kernel !== undefined) args.push('--kernel', plan.kernel);
  if (plan.initrd !== undefined) args.push('--initrd', plan.initrd);
  if (plan.append !== undefined) args.push('--append', plan.append);
  if (plan.noReboot) args.push('--no-reboot');
  return args;
}

export function renderUnit(plan: VmPlan, flags: UnitFlags, ctx: Context): string {
  const stopTimeoutS = parseTimeout(flags.stopTimeout ?? '60', '--stop-timeout');
  const self = selfCommand(ctx.settings);
  const cmd = (...args: string[]): string => [...self, ...args].map(systemdExecWord).join(' ');
  const files = vmRunFiles(ctx.settings.runDir, plan.name);
  return render(
    loadTemplate('uncloud-vm.service'),
    {
      name: plan.name,
      timeoutStopSec: String(stopTimeoutS + 30),
      wantedBy: flags.user ? 'default.target' : 'multi-user.target',
    },
    systemdValue,
    {
      unitDeps: flags.user ? '' : 'After=network-online.target\nWants=network-online.target',
      prepare: cmd('hook', 'prepare', ...startArgs(plan, flags.accel ?? 'auto')),
      execScript: systemdExecWord(files.execScript),
      adopt: cmd('hook', 'adopt', plan.name),
      stop: cmd('stop', plan.name, '--timeout', String(stopTimeoutS)),
      cleanup: cmd('hook', 'cleanup', plan.name),
    },
  );
}

export async function unit(name: string, flags: UnitFlags, ctx: Context): Promise<number> {
  if (flags.enable && !flags.install) throw new UncloudError('USAGE', '--enable needs --install', 2);
  if (flags.dryRun || flags.json || flags.detach || flags.console) {
    throw new UncloudError('USAGE', 'unit takes start options for the VM, not --dry-run, --json, --detach or --console', 2);
  }
  const opts = { ...flags, name };
  const plan = planVm(opts, hostFacts(), { bridge: ctx.settings.bridge, qemu: ctx.settings.qemu }, await uuidSource(opts));
  resolveMedia(plan);
  checkNicMacs(plan, ctx.pool);
  const text = renderUnit(plan, flags, ctx);
  if (!flags.install) {
    ctx.out(text.trimEnd());
    return 0;
  }
  const dir = unitDir(flags.user ?? false);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const path = join(dir, unitName(plan.name));
  writeFileAtomic(path, text, 0o644);
  systemctl(flags.user ?? false, 'daemon-reload');
  if (flags.enable) systemctl(flags.user ?? false, 'enable', unitName(plan.name));
  ctx.err(`installed ${path}${flags.enable ? ' (enabled)' : ''}; start it with 'systemctl${flags.user ? ' --user' : ''} start ${unitName(plan.name)}'`);
  return 0;
}
