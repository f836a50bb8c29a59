/** `uncloud-vm unit <name>`: a systemd unit per VM, printed or installed. */
import { existsSync } from 'node:fs';
import { DEFAULT_STOP_TIMEOUT_S } from '../../core/defaults.js';
import { usageError } from '../../core/errors.js';
import { systemdExecWord, systemdValue } from '../../core/quote.js';
import { parseStore } from '../../core/store-url.js';
import { planToStartOptions, startOptionsToArgs } from '../../core/plan-arguments.js';
import { vmRunFiles } from '../../core/vm-files.js';
import type { VmPlan } from '../../core/vm-plan.js';
import { UNIT_START_GRACE_S } from '../../system/vm-state.js';
import { detectFormat } from '../../system/disk-image.js';
import { AGENT_UNIT, unitName } from '../../system/systemd.js';
import { loadTemplate, render } from '../../system/templates.js';
import type { Context } from '../context.js';
import { selfCommand } from '../self.js';
import type { Command } from 'commander';
import { Option } from 'commander';
import type { Action } from './shared/action.js';
import { addStartOptions, type StartFlags, startFlags } from './shared/start-options.js';
import { checkNicMacs, planFromFlags, resolveMedia } from './shared/start-plan.js';
import { parseTimeout } from './shared/timeout.js';
import { printOrInstallUnit, unitEnvironment } from './shared/unit-environment.js';

export function define(program: Command, action: Action): void {
  addStartOptions(
    program
      .command('unit')
      .description('a systemd unit for a VM: printed, or installed with --install')
      .argument('<name>', 'VM name (the unit is uncloud-vm-<name>.service)'),
    false,
  )
    .option('--user', "a user unit (the user's unit dir, systemctl --user)")
    .option('--install', 'write the unit file and reload systemd')
    .option('--enable', 'with --install: enable the unit')
    .addOption(new Option('--restart <policy>', 'restart the VM when qemu fails (on-failure) or whenever it ends (always)').choices(RESTART_POLICIES).default('no'))
    .addHelpText(
      'after',
      `
Under the unit, qemu is the service's main process: ExecStartPre leases the MACs and writes the qemu
command, ExecStart execs qemu, ExecStop stops the guest over QMP, ExecStopPost gives the MACs back however
the service ended. The unit records the state dir, run dir, prefix and store in force now.

Examples:
  uncloud-vm unit web1 --memory 2048 --disk /var/lib/vms/web1.qcow2
  uncloud-vm unit web1 --memory 2048 --disk /var/lib/vms/web1.qcow2 --install --enable
  systemctl start uncloud-vm-web1.service`,
    )
    .action(action((a, o, ctx) => unit(a[0]!, startFlags(o), ctx)));
}

export interface UnitFlags extends StartFlags {
  user?: boolean;
  install?: boolean;
  enable?: boolean;
  /** systemd's Restart=: no (the default), on-failure, always. */
  restart?: RestartPolicy;
}

export const RESTART_POLICIES = ['no', 'on-failure', 'always'] as const;
export type RestartPolicy = (typeof RESTART_POLICIES)[number];

/**
 * What the VM's unit is ordered after. On the etcd store the VM's addresses hang on the host agent's lease,
 * so the VM requires the agent: stopping (or restarting) the agent stops (or restarts) its VMs too.
 */
export function unitDependencies(user: boolean, store: string): string {
  const deps = user ? [] : ['After=network-online.target', 'Wants=network-online.target'];
  if (parseStore(store).kind === 'etcd') deps.push(`After=${AGENT_UNIT}`, `Requires=${AGENT_UNIT}`);
  return deps.join('\n');
}

/** commander has refused any other policy (--restart's choices are RESTART_POLICIES). */
function restartLines(policy: RestartPolicy | undefined): string {
  if (policy === undefined || policy === 'no') return '';
  return `Restart=${policy}\nRestartSec=5`;
}

export function renderUnit(plan: VmPlan, flags: UnitFlags, ctx: Context): string {
  const stopTimeoutS = parseTimeout(flags.stopTimeout ?? String(DEFAULT_STOP_TIMEOUT_S), '--stop-timeout');
  const self = selfCommand(ctx.settings);
  const cmd = (...args: string[]): string => [...self, ...args].map(systemdExecWord).join(' ');
  const files = vmRunFiles(ctx.settings.runDir, plan.name);
  return render(
    loadTemplate('uncloud-vm.service'),
    {
      name: plan.name,
      timeoutStopSec: String(stopTimeoutS + 30),
      timeoutStartSec: String(UNIT_START_GRACE_S),
      wantedBy: flags.user ? 'default.target' : 'multi-user.target',
    },
    systemdValue,
    {
      unitDeps: unitDependencies(flags.user ?? false, ctx.settings.store),
      environment: unitEnvironment(ctx.settings),
      restart: restartLines(flags.restart),
      prepare: cmd('hook', 'prepare', ...startOptionsToArgs(planToStartOptions(plan))),
      execScript: systemdExecWord(files.execScript),
      adopt: cmd('hook', 'adopt', plan.name),
      stop: cmd('stop', plan.name, '--timeout', String(stopTimeoutS)),
      cleanup: cmd('hook', 'cleanup', plan.name),
    },
  );
}

export async function unit(name: string, flags: UnitFlags, ctx: Context): Promise<number> {
  if (flags.enable && !flags.install) throw usageError('--enable needs --install');
  if (flags.dryRun || flags.json || flags.detach || flags.console) {
    throw usageError('unit takes start options for the VM, not --dry-run, --json, --detach or --console');
  }
  const opts = { ...flags, name };
  const plan = await planFromFlags(opts, ctx);
  // The unit may be for later or for another host: what is missing here is said, and checked at each start.
  const missing = resolveMedia(plan, false);
  // A disk that exists gets its format pinned now, so no start has to guess it from the disk's content.
  plan.disks = plan.disks.map((d) => (d.format === undefined && existsSync(d.path) ? { ...d, format: detectFormat(d.path) } : d));
  checkNicMacs(plan, ctx.pool);
  const text = renderUnit(plan, flags, ctx);
  for (const m of missing) ctx.err(`note: ${m} does not exist on this host (yet); the unit checks it each time it starts`);
  for (const w of plan.warnings) ctx.err(w);
  const path = printOrInstallUnit(ctx, flags, unitName(plan.name), text, flags.enable ? [['enable', unitName(plan.name)]] : []);
  if (path) ctx.err(`installed ${path}${flags.enable ? ' (enabled)' : ''}; start it with 'systemctl${flags.user ? ' --user' : ''} start ${unitName(plan.name)}'`);
  return 0;
}
