/** `uncloud-vm gc`: reconcile what is recorded with what really runs, and say what changed. */
import type { Lease } from '../../store/store.js';
import type { Context } from '../context.js';
import type { Command } from 'commander';
import type { Action } from './shared/action.js';
import { examples } from './shared/help.js';

export async function gc(_flags: object, ctx: Context): Promise<number> {
  const { reconcile, conflictMessage } = await import('../../qemu/reconcile.js');
  const { parseStore } = await import('../../core/store-url.js');
  const store = await ctx.store();
  const r = await reconcile({
    store,
    pool: ctx.pool,
    runDir: ctx.settings.runDir,
    host: ctx.settings.host,
    // On etcd, keys hang on the host agent's lease: the agent re-creates what vanished.
    recreate: parseStore(ctx.settings.store).kind === 'file',
  });
  const vmOf = (l: Lease) => (l.vm ? ` (VM ${l.vm.name}${l.nic !== null ? ` nic${l.nic}` : ''})` : '');
  for (const n of r.endedVms) ctx.out(`ended VM ${n}: its guest had powered off, but an interrupted reboot had kept qemu paused`);
  for (const n of r.restoredActions) ctx.out(`put back VM ${n}'s power-off and reboot actions, left changed by an interrupted reboot or reset`);
  for (const l of r.freed) ctx.out(`freed ${l.mac}${vmOf(l)}`);
  for (const l of r.adopted) ctx.out(`adopted ${l.mac}${vmOf(l)}: owned by its running qemu now`);
  for (const l of r.recreated) ctx.out(`restored ${l.mac}${vmOf(l)}: its running qemu uses it`);
  for (const d of r.removedDirs) ctx.out(`removed run dir ${d}`);
  for (const t of r.removedTaps) ctx.out(`removed leftover tap ${t}`);
  for (const t of r.removedGuards) ctx.out(`removed leftover guard rules of tap ${t}`);
  for (const d of r.damaged) ctx.err(`damaged record left untouched: ${d.why.includes(d.key) ? d.why : `${d.key}: ${d.why}`}`);
  for (const c of r.conflicts) ctx.err(conflictMessage(c));
  for (const f of r.failed) ctx.err(f);
  const changed = r.endedVms.length + r.restoredActions.length + r.freed.length + r.adopted.length + r.recreated.length + r.removedDirs.length + r.removedTaps.length + r.removedGuards.length;
  if (changed === 0 && r.failed.length === 0) ctx.err('gc: nothing to reclaim');
  return r.conflicts.length > 0 || r.damaged.length > 0 || r.failed.length > 0 ? 1 : 0;
}

export function define(program: Command, action: Action): void {
  program
    .command('gc')
    .description('free leases whose owner process is gone (or its pid reused), and their run dirs')
    .addHelpText('after', examples('uncloud-vm gc', 'uncloud-vm --store etcd://10.0.0.1:2379 gc'))
    .action(action((_a, _o, ctx) => gc({}, ctx)));
}
