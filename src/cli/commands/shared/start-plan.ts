/**
 * What `start`, `unit` and `hook prepare` share: the VM plan from the start flags, its media checked and made
 * absolute, and preparing it (disks, leases, scripts, the NoCloud seed) with everything given back on failure.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { UncloudError } from '../../../core/errors.js';
import { checkInPool, type Pool } from '../../../core/mac.js';
import { seedFiles } from '../../../core/nocloud.js';
import { NAME_NAMESPACE, type UuidSource } from '../../../core/vm-identity.js';
import { planVm, type StartOptions, type VmPlan } from '../../../core/vm-plan.js';
import type { LaunchDeps, PreparedVm, PrepareOptions } from '../../../qemu/prepare-vm.js';
import { absoluteDisk, prepareDisks, removeDisks } from '../../../system/disk-image.js';
import { hostFacts } from '../../../system/host.js';
import { randomUuid } from '../../../system/random-uuid.js';
import { absoluteCloudInit, readCloudInit, type SeedContent, seedToolMissing, writeSeed } from '../../../system/nocloud-seed.js';
import type { Context } from '../../context.js';

/** The uuid package is loaded only when a name-derived UUID is needed: it is the costliest import of a dry run. */
export async function uuidSource(flags: StartOptions): Promise<UuidSource> {
  const forName = flags.name !== undefined && flags.uuid === undefined ? (await import('uuid')).v5 : undefined;
  return {
    random: randomUuid,
    forName: (name) => {
      if (!forName) throw new Error('uuidSource: name-derived UUID not prepared');
      return forName(name, NAME_NAMESPACE);
    },
  };
}

/** The VM plan from the start flags, with this host's facts and the configured defaults. */
export async function planFromFlags(flags: StartOptions, ctx: Context): Promise<VmPlan> {
  return planVm(flags, hostFacts(), { bridge: ctx.settings.bridge, qemu: ctx.settings.qemu }, await uuidSource(flags));
}

/** This process as an Owner (it owns the VM's leases until qemu is recorded). */
export async function launcherOwner() {
  const { currentOwner } = await import('../../../system/proc.js');
  return currentOwner(process.pid)!;
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
export function seedContent(plan: VmPlan): SeedContent | undefined {
  if (plan.cloudInit === undefined) return undefined;
  return readCloudInit(plan.cloudInit);
}

/**
 * prepareVm plus the VM's media: new= disks made before the MACs are leased, the NoCloud seed after
 * (it names the MACs). A failure gives back the disks it made as well as what prepareVm took.
 */
export async function prepareWithMedia(plan: VmPlan, seed: SeedContent | undefined, deps: LaunchDeps, opts: PrepareOptions): Promise<{ vm: PreparedVm; created: string[] }> {
  const missingTool = seed ? seedToolMissing() : undefined;
  if (missingTool) throw new UncloudError('SEED', missingTool);
  const { prepareVm } = await import('../../../qemu/prepare-vm.js');
  const { giveBackAfterFailure } = await import('../../../qemu/reconcile.js');
  const { disks, created } = prepareDisks(plan.disks, { create: true });
  plan.disks = disks;
  try {
    const vm = await prepareVm(plan, deps, opts);
    if (seed) {
      try {
        writeSeed(vm.files.seed, seedFiles({ uuid: vm.spec.uuid, name: vm.spec.name, macs: vm.spec.nics.map((n) => n.mac), ...seed }));
      } catch (err) {
        vm.gate?.child.kill('SIGKILL');
        await giveBackAfterFailure(deps.store, deps.host, vm, deps.note);
        throw err;
      }
    }
    return { vm, created };
  } catch (err) {
    removeDisks(created);
    throw err;
  }
}

export function sayWarnings(plan: VmPlan, ctx: Context): void {
  if (plan.accelNote) ctx.err(`note: ${plan.accelNote}`);
  for (const w of plan.warnings) ctx.err(w);
}
