/** `uncloud-vm unit <name>`: a systemd unit per VM, printed or installed. */
import { existsSync } from 'node:fs';
import { DEFAULT_STOP_TIMEOUT_S } from '../../core/defaults.js';
import { UncloudError } from '../../core/errors.js';
import { systemdExecWord, systemdValue } from '../../core/quote.js';
import { parseStore } from '../../core/store-url.js';
import { planToStartOptions, startOptionsToArgs } from '../../core/plan-arguments.js';
import { vmRunFiles } from '../../core/vm-files.js';
import { planVm, type VmPlan } from '../../core/vm-plan.js';
import { UNIT_START_GRACE_S } from '../../system/vm-state.js';
import { detectFormat } from '../../system/disk-image.js';
import { hostFacts } from '../../system/host.js';
import { AGENT_UNIT, installUnit, unitName } from '../../system/systemd.js';
import { loadTemplate, render } from '../../system/templates.js';
import type { Context } from '../context.js';
import { selfCommand, selfNote } from '../self.js';
import type { Settings } from '../../system/config.js';
import { checkNicMacs, parseTimeout, resolveMedia, type StartFlags, uuidSource } from './start.js';

export interface UnitFlags extends StartFlags {
  user?: boolean;
  install?: boolean;
  enable?: boolean;
  /** systemd's Restart=: no (the default), on-failure, always. */
  restart?: string;
}

export const RESTART_POLICIES = ['no', 'on-failure', 'always'] as const;

/**
 * What the VM's unit is ordered after. On the etcd store the VM's addresses hang on the host agent's lease,
 * so the VM requires the agent: stopping (or restarting) the agent stops (or restarts) its VMs too.
 */
export function unitDependencies(user: boolean, store: string): string {
  const deps = user ? [] : ['After=network-online.target', 'Wants=network-online.target'];
  if (parseStore(store).kind === 'etcd') deps.push(`After=${AGENT_UNIT}`, `Requires=${AGENT_UNIT}`);
  return deps.join('\n');
}

function restartLines(policy: string | undefined): string {
  if (policy === undefined || policy === 'no') return '';
  if (!(RESTART_POLICIES as readonly string[]).includes(policy)) {
    throw new UncloudError('USAGE', `invalid --restart '${policy}': expected no, on-failure or always`, 2);
  }
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
  if (flags.enable && !flags.install) throw new UncloudError('USAGE', '--enable needs --install', 2);
  if (flags.dryRun || flags.json || flags.detach || flags.console) {
    throw new UncloudError('USAGE', 'unit takes start options for the VM, not --dry-run, --json, --detach or --console', 2);
  }
  const opts = { ...flags, name };
  const plan = planVm(opts, hostFacts(), { bridge: ctx.settings.bridge, qemu: ctx.settings.qemu }, await uuidSource(opts));
  // The unit may be for later or for another host: what is missing here is said, and checked at each start.
  const missing = resolveMedia(plan, false);
  // A disk that exists gets its format pinned now, so no start has to guess it from the disk's content.
  plan.disks = plan.disks.map((d) => (d.format === undefined && existsSync(d.path) ? { ...d, format: detectFormat(d.path) } : d));
  checkNicMacs(plan, ctx.pool);
  const text = renderUnit(plan, flags, ctx);
  for (const m of missing) ctx.err(`note: ${m} does not exist on this host (yet); the unit checks it each time it starts`);
  for (const w of plan.warnings) ctx.err(w);
  const note = selfNote();
  if (note) ctx.err(note);
  warnCredentials(ctx);
  if (!flags.install) {
    ctx.out(text.trimEnd());
    return 0;
  }
  const path = installUnit(flags.user ?? false, unitName(plan.name), text, flags.enable ? [['enable', unitName(plan.name)]] : []);
  ctx.err(`installed ${path}${flags.enable ? ' (enabled)' : ''}; start it with 'systemctl${flags.user ? ' --user' : ''} start ${unitName(plan.name)}'`);
  return 0;
}

/** Where units read the etcd credentials from: a root-only file, never the unit itself. */
export const UNIT_ENV_FILE = '/etc/uncloud-vm/env';

/** Host settings with no command-line flag: a unit gets the values in force when it was written. */
const UNIT_ENV_SETTINGS = [
  ['UNCLOUD_VM_HOST', 'host'],
  ['UNCLOUD_VM_VXLAN_DEV', 'vxlanDev'],
  ['UNCLOUD_VM_VXLAN_LOCAL', 'vxlanLocal'],
  ['UNCLOUD_VM_VXLAN_PEERS', 'vxlanPeers'],
  ['UNCLOUD_VM_VXLAN_MTU', 'vxlanMtu'],
] as const;

/**
 * The host name (it decides which leases are this host's) and the VM networks' underlay settings are
 * written into every unit, as they are now; credentials come from UNIT_ENV_FILE if it exists
 * (UNCLOUD_VM_ETCD_USER=…, UNCLOUD_VM_ETCD_PASSWORD=…, …_CA/_CERT/_KEY=<pem path>).
 */
export function unitEnvironment(settings: Settings): string {
  const set = UNIT_ENV_SETTINGS.filter(([, key]) => settings[key] !== undefined);
  return [...set.map(([env, key]) => `Environment=${systemdExecWord(`${env}=${settings[key]}`)}`), `EnvironmentFile=-${UNIT_ENV_FILE}`].join('\n');
}

/** Credentials in this environment do not reach a unit: say where they must go. */
export function warnCredentials(ctx: Context): void {
  const set = Object.keys(process.env).filter((k) => k.startsWith('UNCLOUD_VM_ETCD_'));
  if (set.length > 0) ctx.err(`note: ${set.join(', ')} are not written into the unit; put them in ${UNIT_ENV_FILE} (mode 0600), which the unit reads`);
}
