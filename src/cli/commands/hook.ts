/**
 * `uncloud-vm hook …`: the steps generated units (prepare, adopt, cleanup) and detached VMs' ifdown scripts
 * (release) run. Hidden: not for people.
 */
import type { Command } from 'commander';
import { UncloudError, usageError } from '../../core/errors.js';
import { formatMac, parseMac } from '../../core/mac.js';
import type { VmPlan } from '../../core/vm-plan.js';
import { bridgeExists } from '../../system/host.js';
import { prepareNetworks } from '../../system/network.js';
import { writeRecord } from '../../system/run-dir.js';
import { observeVm } from '../../system/vm-state.js';
import type { Context } from '../context.js';
import type { Action } from './shared/action.js';
import { addStartOptions, type StartFlags, startFlags } from './shared/start-options.js';
import { checkNicMacs, launcherOwner, planFromFlags, prepareWithMedia, resolveMedia, sayWarnings, seedContent } from './shared/start-plan.js';
import { checkTarget } from './shared/vm-target.js';

export function define(program: Command, action: Action): void {
  // Run by generated units and by detached VMs' ifdown scripts, not by people.
  const hook = program.command('hook', { hidden: true }).description('steps run by systemd units and detached VMs');
  addStartOptions(hook.command('prepare').description('ExecStartPre: lease MACs, write the qemu command')).action(action((_a, o, ctx) => hookPrepare(startFlags(o), ctx)));
  hook
    .command('adopt')
    .argument('<name>')
    .description('ExecStartPost: make qemu the owner of the leases')
    .action(action((a, _o, ctx) => hookAdopt(a[0]!, ctx)));
  hook
    .command('release')
    .argument('<name>')
    .argument('<mac>')
    .description("ifdown of a detached VM: give one NIC's MAC back")
    .action(action((a, _o, ctx) => hookRelease(a[0]!, a[1]!, ctx)));
  hook
    .command('cleanup')
    .argument('<name>')
    .description('ExecStopPost: give back all the VM holds')
    .action(action((a, _o, ctx) => hookCleanup(a[0]!, ctx)));
}

/** ExecStartPre of a unit: lease the MACs and write the scripts; systemd then execs qemu. */
export async function hookPrepare(flags: StartFlags, ctx: Context): Promise<number> {
  if (flags.name === undefined) throw usageError('hook prepare needs --name');
  const { settings } = ctx;
  const plan = await planFromFlags(flags, ctx);
  resolveMedia(plan);
  const seed = seedContent(plan);
  checkNicMacs(plan, ctx.pool);
  sayWarnings(plan, ctx);
  const deps = { store: await ctx.store({ requireAgent: true }), pool: ctx.pool, runDir: settings.runDir, stateDir: settings.stateDir, host: settings.host, bridgeExists, ensureNetworks: (p: VmPlan) => prepareNetworks(p, settings, ctx.err), note: ctx.err, bridges: settings.bridges };
  const { vm } = await prepareWithMedia(plan, seed, deps, { launcher: await launcherOwner(), managedBy: 'unit' });
  for (const nic of vm.spec.nics) ctx.err(`VM ${vm.spec.name}: nic${nic.index} ${nic.mac} on ${nic.bridge} (tap ${nic.tap})`);
  return 0;
}

export async function hookAdopt(name: string, ctx: Context): Promise<number> {
  checkTarget(name);
  const deadline = Date.now() + 30_000;
  let vm = observeVm(ctx.settings.runDir, name);
  if (!vm.record) throw new UncloudError('NO_VM', `VM ${name} has no run record in ${ctx.settings.runDir}`);
  while (!vm.qemu) {
    if (Date.now() > deadline) throw new UncloudError('QEMU_TIMEOUT', `qemu of VM ${name} wrote no pidfile within 30 s`);
    await new Promise((r) => setTimeout(r, 50));
    vm = observeVm(ctx.settings.runDir, name);
  }
  // With etcd, qemu's leases must hang on the host agent's lease: this process ends right after.
  const store = await ctx.store({ requireAgent: true });
  const rec = vm.record!;
  await store.setOwners(
    rec.nics.map((n) => n.mac),
    [vm.qemu],
  );
  writeRecord(vm.files, { ...rec, qemu: vm.qemu, launcher: null });
  // qemu is up: remember the unit's VM (a start that fails before this changes nothing).
  await store.putIdentity({ version: 1, name: rec.name, uuid: rec.uuid, macs: rec.nics.map((n) => n.mac), updated: new Date().toISOString() });
  return 0;
}

export async function hookRelease(name: string, mac: string, ctx: Context): Promise<number> {
  checkTarget(name);
  await (await ctx.store()).release(formatMac(parseMac(mac)), name);
  return 0;
}

/** ExecStopPost: systemd has ended the unit's processes; give back what the VM held, unless a qemu of it still runs. */
export async function hookCleanup(name: string, ctx: Context): Promise<number> {
  checkTarget(name);
  const { cleanupVm } = await import('../../qemu/reconcile.js');
  const freed = await cleanupVm(await ctx.store(), ctx.settings.runDir, ctx.settings.host, name, true);
  if (freed === null) ctx.err(`VM ${name} still has a live qemu; left it alone`);
  for (const l of freed ?? []) ctx.err(`released ${l.mac} (VM ${name} nic${l.nic})`);
  return 0;
}
