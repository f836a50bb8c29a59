/** `uncloud-vm start`: plan, then print (--dry-run) or prepare and supervise the VM. */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEFAULT_STOP_TIMEOUT_S } from '../../core/defaults.js';
import { UncloudError } from '../../core/errors.js';
import { checkInPool, type Pool } from '../../core/mac.js';
import { seedFiles } from '../../core/nocloud.js';
import { buildQemuArgv, formatCommand } from '../../core/qemu-argv.js';
import { shellQuote } from '../../core/quote.js';
import { vmLogFiles, vmRunFiles } from '../../core/vm-files.js';
import { NAME_NAMESPACE, type UuidSource } from '../../core/vm-identity.js';
import { planVm, specFor, type StartOptions, type VmPlan } from '../../core/vm-plan.js';
import type { LaunchDeps, PreparedVm, PrepareOptions } from '../../qemu/launcher.js';
import { absoluteDisk, prepareDisks, removeDisks } from '../../system/disk-image.js';
import { bridgeExists, hostFacts } from '../../system/host.js';
import { prepareNetworks } from '../../system/network.js';
import { nicAddressesOf } from '../../system/nic-addresses.js';
import { addressLines } from '../addresses.js';
import { absoluteCloudInit, readCloudInit, type SeedContent, seedToolMissing, writeSeed } from '../../system/nocloud-seed.js';
import type { Context } from '../context.js';

export interface StartFlags extends StartOptions {
  dryRun?: boolean;
  json?: boolean;
  detach?: boolean;
  stopTimeout?: string;
}

/** The uuid package is loaded only when a name-derived UUID is needed: it is the costliest import of a dry run. */
export async function uuidSource(flags: StartOptions): Promise<UuidSource> {
  const forName = flags.name !== undefined && flags.uuid === undefined ? (await import('uuid')).v5 : undefined;
  return {
    random: randomUUID,
    forName: (name) => {
      if (!forName) throw new Error('uuidSource: name-derived UUID not prepared');
      return forName(name, NAME_NAMESPACE);
    },
  };
}

/** This process as an Owner (it owns the VM's leases until qemu is recorded). */
async function self() {
  const { currentOwner } = await import('../../system/proc.js');
  return currentOwner(process.pid)!;
}

export function parseTimeout(text: string, flag: string): number {
  if (!/^[0-9]+$/.test(text) || Number(text) > 86400) {
    throw new UncloudError('USAGE', `invalid ${flag} '${text}': expected whole seconds from 0 to 86400`, 2);
  }
  return Number(text);
}

/** A MAC asked for with --nic mac= must be one the pool tracks. */
export function checkNicMacs(plan: VmPlan, pool: Pool): void {
  for (const nic of plan.nics) {
    if (nic.mac !== undefined) checkInPool(pool, nic.mac, `--nic mac=${nic.mac}`);
  }
}

/**
 * Boot media and the files --disk and --cloud-init name become absolute paths. With mustExist (start),
 * boot media must exist (disks are checked by prepareDisks); without (a unit for another day or host),
 * what is missing is returned, to be said.
 */
export function resolveMedia(plan: VmPlan, mustExist = true): string[] {
  const missing: string[] = [];
  const check = (flag: string, path: string): string => {
    const abs = resolve(path);
    if (!existsSync(abs)) {
      if (mustExist) throw new UncloudError('NO_FILE', `${flag} ${path}: no such file`, 2);
      missing.push(`${flag} ${abs}`);
    }
    return abs;
  };
  if (plan.cdrom !== undefined) plan.cdrom = check('--cdrom', plan.cdrom);
  if (plan.kernel !== undefined) plan.kernel = check('--kernel', plan.kernel);
  if (plan.initrd !== undefined) plan.initrd = check('--initrd', plan.initrd);
  plan.disks = plan.disks.map(absoluteDisk);
  if (!mustExist) {
    for (const d of plan.disks) {
      if (!d.create && !existsSync(d.path)) missing.push(`--disk ${d.path}`);
      if (d.create?.backing !== undefined && !existsSync(d.create.backing)) missing.push(`--disk backing=${d.create.backing}`);
    }
  }
  if (plan.cloudInit !== undefined) {
    const ci = (plan.cloudInit = absoluteCloudInit(plan.cloudInit));
    const files = [ci.sshKeys && `ssh-keys=${ci.sshKeys}`, ci.userData && `user-data=${ci.userData}`, typeof ci.network === 'object' && `network=${ci.network.file}`];
    if (!mustExist) for (const f of files) if (f && !existsSync(f.slice(f.indexOf('=') + 1))) missing.push(`--cloud-init ${f}`);
  }
  return missing;
}

/** What a start checks before it takes anything: the seed's input files and the tool that builds it. */
function seedContent(plan: VmPlan): SeedContent | undefined {
  if (plan.cloudInit === undefined) return undefined;
  return readCloudInit(plan.cloudInit);
}

/**
 * prepareVm plus the VM's media: new= disks made before the MACs are leased, the NoCloud seed after
 * (it names the MACs). A failure gives back the disks it made as well as what prepareVm took.
 */
async function prepareWithMedia(plan: VmPlan, seed: SeedContent | undefined, deps: LaunchDeps, opts: PrepareOptions): Promise<{ vm: PreparedVm; created: string[] }> {
  const missingTool = seed ? seedToolMissing() : undefined;
  if (missingTool) throw new UncloudError('SEED', missingTool);
  const { prepareVm } = await import('../../qemu/launcher.js');
  const { giveBackVm } = await import('../../qemu/reconcile.js');
  const { disks, created } = prepareDisks(plan.disks, { create: true });
  plan.disks = disks;
  try {
    const vm = await prepareVm(plan, deps, opts);
    if (seed) {
      try {
        writeSeed(vm.files.seed, seedFiles({ uuid: vm.spec.uuid, name: vm.spec.name, macs: vm.spec.nics.map((n) => n.mac), ...seed }));
      } catch (err) {
        await giveBackVm(deps.store, deps.host, vm);
        throw err;
      }
    }
    return { vm, created };
  } catch (err) {
    removeDisks(created);
    throw err;
  }
}

function sayWarnings(plan: VmPlan, ctx: Context): void {
  if (plan.accelNote) ctx.err(plan.accelNote);
  for (const w of plan.warnings) ctx.err(w);
}

export async function start(flags: StartFlags, ctx: Context): Promise<number> {
  const { settings } = ctx;
  const plan = planVm(flags, hostFacts(), { bridge: settings.bridge, qemu: settings.qemu }, await uuidSource(flags));
  resolveMedia(plan);
  const seed = seedContent(plan);
  checkNicMacs(plan, ctx.pool);
  if (flags.dryRun) {
    prepareNetworks(plan, settings, ctx.err, true);
    return dryRun(plan, flags, ctx);
  }
  if (flags.json && !flags.detach) throw new UncloudError('USAGE', '--json goes with --dry-run or --detach', 2);

  const stopTimeoutS = parseTimeout(flags.stopTimeout ?? String(DEFAULT_STOP_TIMEOUT_S), '--stop-timeout');
  if (flags.detach && plan.console) throw new UncloudError('USAGE', '--console and --detach exclude each other', 2);
  const { runDetached, superviseVm } = await import('../../qemu/launcher.js');
  const { selfCommand } = await import('../self.js');
  // A detached VM outlives this process: with etcd its leases must hang on the host agent's lease.
  const store = await ctx.store(flags.detach ? { requireAgent: true } : {});
  const deps = { store, pool: ctx.pool, runDir: settings.runDir, stateDir: settings.stateDir, host: settings.host, bridgeExists, ensureNetworks: (p: VmPlan) => prepareNetworks(p, settings, ctx.err), note: ctx.err, stopTimeoutS, bridges: settings.bridges };
  sayWarnings(plan, ctx);
  const { vm, created } = await prepareWithMedia(plan, seed, deps, {
    launcher: await self(),
    managedBy: 'launcher',
    ...(flags.detach ? { releaseOnDown: [...selfCommand(settings), 'hook', 'release', plan.name] } : {}),
  });
  for (const nic of vm.spec.nics) {
    ctx.err(`VM ${vm.spec.name} (${vm.spec.uuid}): nic${nic.index} ${nic.mac} on ${nic.bridge} (tap ${nic.tap})`);
  }
  if (!vm.spec.console) ctx.err(`serial console: 'uncloud-vm console ${vm.spec.name}' (logged to ${vm.spec.serialLog})`);
  if (vm.spec.vncSocket !== undefined) ctx.err(`VNC display: ${vm.spec.vncSocket}`);
  if (flags.detach) {
    const qemu = await runDetached(vm, deps).catch((err: unknown) => {
      removeDisks(created);
      throw err;
    });
    ctx.err(`VM ${vm.spec.name} runs in the background (qemu pid ${qemu.pid}); stop it with 'uncloud-vm stop ${vm.spec.name}'`);
    // stdout is for scripts: the name (or, with --json, what identifies the VM).
    const macs = vm.spec.nics.map((n) => n.mac);
    ctx.out(flags.json ? JSON.stringify({ name: vm.spec.name, uuid: vm.spec.uuid, macs, pid: qemu.pid }) : vm.spec.name);
    return 0;
  }
  return superviseVm(vm, deps);
}

async function dryRun(plan: VmPlan, flags: StartFlags, ctx: Context): Promise<number> {
  const store = await ctx.store();
  const auto = plan.nics.filter((n) => n.mac === undefined).length;
  const next = auto > 0 ? await store.peek(ctx.pool, auto) : [];
  const macs = plan.nics.map((n) => n.mac ?? next.shift()!);
  // Formats are detected as a start would; a new= disk is not made.
  plan.disks = prepareDisks(plan.disks, { create: false }).disks;
  const spec = specFor(plan, macs, vmRunFiles(ctx.settings.runDir, plan.name), vmLogFiles(ctx.settings.stateDir, plan.name));
  const argv = buildQemuArgv(spec);
  const addresses = nicAddressesOf(plan, spec, ctx.settings.bridges);
  if (flags.json) {
    const nics = spec.nics.map((n, i) => ({
      mac: n.mac,
      tap: n.tap,
      bridge: n.bridge,
      tentative: plan.nics[i]!.mac === undefined,
      addresses: addresses[i],
    }));
    ctx.out(JSON.stringify({ argv, uuid: spec.uuid, name: spec.name, accel: spec.accel, nics }, null, 2));
  } else {
    // Comments after the command: it stays copy-pasteable.
    const notes = spec.nics.flatMap((n, i) => [`# nic${n.index} ${n.mac} on ${n.bridge}`, ...addressLines(addresses[i]!).map(([k, v]) => `#   ${k}: ${v}`)]);
    ctx.out([formatCommand(argv, shellQuote), ...notes].join('\n'));
  }
  sayWarnings(plan, ctx);
  const missingTool = plan.cloudInit ? seedToolMissing() : undefined;
  if (missingTool) ctx.err(`note: ${missingTool}; start would refuse to run`);
  for (const d of plan.disks) if (d.create && !existsSync(d.path)) ctx.err(`note: disk ${d.path} does not exist yet; start would create it`);
  for (const nic of spec.nics) {
    if (!bridgeExists(nic.bridge)) ctx.err(`note: bridge ${nic.bridge} does not exist; start would refuse to run`);
  }
  if (auto > 0) ctx.err(`dry run: nothing reserved; ${auto === 1 ? 'the MAC shown is' : 'MACs shown are'} what the pool would give next (tentative)`);
  return 0;
}

/** ExecStartPre of a unit: lease the MACs and write the scripts; systemd then execs qemu. */
export async function hookPrepare(flags: StartFlags, ctx: Context): Promise<number> {
  if (flags.name === undefined) throw new UncloudError('USAGE', 'hook prepare needs --name', 2);
  const { settings } = ctx;
  const plan = planVm(flags, hostFacts(), { bridge: settings.bridge, qemu: settings.qemu }, await uuidSource(flags));
  resolveMedia(plan);
  const seed = seedContent(plan);
  checkNicMacs(plan, ctx.pool);
  sayWarnings(plan, ctx);
  const deps = { store: await ctx.store({ requireAgent: true }), pool: ctx.pool, runDir: settings.runDir, stateDir: settings.stateDir, host: settings.host, bridgeExists, ensureNetworks: (p: VmPlan) => prepareNetworks(p, settings, ctx.err), note: ctx.err, bridges: settings.bridges };
  const { vm } = await prepareWithMedia(plan, seed, deps, { launcher: await self(), managedBy: 'unit' });
  for (const nic of vm.spec.nics) ctx.err(`VM ${vm.spec.name}: nic${nic.index} ${nic.mac} on ${nic.bridge} (tap ${nic.tap})`);
  return 0;
}
