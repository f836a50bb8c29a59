/** `uncloud-vm forget <vm>` (`rm`): drop a stopped VM's remembered identity (UUID, MACs) and its logs. */
import { UncloudError } from '../../core/errors.js';
import { vmLogFiles } from '../../core/vm-files.js';
import { validateName } from '../../core/vm-identity.js';
import { withRunDirLock } from '../../system/run-dir.js';
import { hasLogs, removeVmLogs } from '../../system/vm-logs.js';
import { observeVm } from '../../system/vm-state.js';
import type { Context } from '../context.js';
import { leaseState } from './mac.js';
import type { Command } from 'commander';
import type { Action } from './shared/action.js';

export function define(program: Command, action: Action): void {
  program
    .command('forget')
    .alias('rm')
    .description("drop a stopped VM's remembered UUID and MACs, and its logs")
    .argument('<vm>', 'VM name')
    .addHelpText(
      'after',
      `
Refused while the VM runs. Started again afterwards, the VM gets a fresh identity: its UUID derives from
its name again, but its MACs are the pool's next free ones.

Examples:
  uncloud-vm forget web1
  uncloud-vm rm web1`,
    )
    .action(action((a, _o, ctx) => forget(a[0]!, ctx)));
}

export async function forget(name: string, ctx: Context): Promise<number> {
  validateName(name);
  // Under the run dir's claim lock, as a start claims its VM: a start of this name cannot slip in between the
  // check that the VM does not run and the removal of its identity and logs (it would run forgotten, its
  // serial log deleted under it). One of the two wins; the other is refused.
  return withRunDirLock(ctx.settings.runDir, () => forgetUnlocked(name, ctx));
}

async function forgetUnlocked(name: string, ctx: Context): Promise<number> {
  const vm = observeVm(ctx.settings.runDir, name);
  const running = `VM ${name} is ${vm.phase === 'starting' ? 'starting' : 'running'}; stop it first ('uncloud-vm stop ${name}'), then forget it`;
  if (vm.phase !== 'dead') throw new UncloudError('VM_RUNNING', running);
  const store = await ctx.store();
  const leases = (await store.list()).leases.filter((l) => l.vm?.name === name);
  const remote = leases.find((l) => leaseState(l, ctx.settings.host) === 'remote');
  if (remote) throw new UncloudError('VM_RUNNING', `VM ${name} holds ${remote.mac} on host ${remote.host}; stop it there first`);
  if (leases.some((l) => leaseState(l, ctx.settings.host) === 'live')) throw new UncloudError('VM_RUNNING', running);

  // A damaged record is what forget is for: it goes, and the note says it was damaged.
  let damaged = false;
  const identity = await store.getIdentity(name).catch((err: unknown) => {
    if (err instanceof UncloudError && err.code === 'STATE_DAMAGED') {
      damaged = true;
      return null;
    }
    throw err;
  });
  const logs = vmLogFiles(ctx.settings.stateDir, name);
  // A dead VM's leftovers are gc's to reclaim (its leases, taps and filter rules go together).
  if (leases.some((l) => leaseState(l, ctx.settings.host) === 'stale')) {
    throw new UncloudError('VM_STALE', `VM ${name} ended without giving its MACs back; run 'uncloud-vm gc' first, then forget it`);
  }
  if (!identity && !damaged && !hasLogs(logs)) {
    throw new UncloudError('NO_VM', `no VM named ${name} is known (no remembered identity, no logs in ${logs.dir})`);
  }
  if (identity || damaged) await store.deleteIdentity(name);
  removeVmLogs(logs);
  const what = [
    identity ? `UUID ${identity.uuid} and MACs ${identity.macs.join(', ')}` : damaged ? 'its damaged record' : null,
    'logs',
  ].filter(Boolean);
  ctx.err(`forgot VM ${name}: ${what.join('; ')}`);
  return 0;
}
