/** What every generated unit (a VM's, the agent's) carries in its environment, and the credentials it must not. */
import { systemdExecWord } from '../../../core/quote.js';
import type { Settings } from '../../../system/config.js';
import { installUnit } from '../../../system/systemd.js';
import type { Context } from '../../context.js';
import { selfNote } from '../../self.js';

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
function warnCredentials(ctx: Context): void {
  const set = Object.keys(process.env).filter((k) => k.startsWith('UNCLOUD_VM_ETCD_'));
  if (set.length > 0) ctx.err(`note: ${set.join(', ')} are not written into the unit; put them in ${UNIT_ENV_FILE} (mode 0600), which the unit reads`);
}

/**
 * A generated unit printed on stdout, or with `install` written where systemd finds it and systemd reloaded
 * (then `after`, e.g. enable). Notes about the command it runs and about credentials come first, on stderr.
 * Returns the installed unit's path, or null when it was printed.
 */
export function printOrInstallUnit(ctx: Context, flags: { user?: boolean; install?: boolean }, name: string, text: string, after: string[][]): string | null {
  const note = selfNote();
  if (note) ctx.err(note);
  warnCredentials(ctx);
  if (!flags.install) {
    ctx.out(text.trimEnd());
    return null;
  }
  return installUnit(flags.user ?? false, name, text, after);
}
