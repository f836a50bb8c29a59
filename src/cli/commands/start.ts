/** `uncloud-vm start`: plan, then print (--dry-run) or prepare and supervise the VM. */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { UncloudError } from '../../core/errors.js';
import { buildQemuArgv, formatCommand } from '../../core/qemu-argv.js';
import { shellQuote } from '../../core/quote.js';
import { planVm, specFor, type StartOptions, type VmPlan, vmRunFiles } from '../../core/vm-spec.js';
import { bridgeExists, hostFacts } from '../../system/host.js';
import type { Context } from '../context.js';

export interface StartFlags extends StartOptions {
  dryRun?: boolean;
  json?: boolean;
}

/** Boot media must exist; they are passed to qemu as absolute paths. */
function resolveMedia(plan: VmPlan): void {
  const check = (flag: string, path: string): string => {
    const abs = resolve(path);
    if (!existsSync(abs)) throw new UncloudError('NO_FILE', `${flag} ${path}: no such file`, 2);
    return abs;
  };
  if (plan.cdrom !== undefined) plan.cdrom = check('--cdrom', plan.cdrom);
  if (plan.kernel !== undefined) plan.kernel = check('--kernel', plan.kernel);
  if (plan.initrd !== undefined) plan.initrd = check('--initrd', plan.initrd);
  plan.disks = plan.disks.map((d) => check('--disk', d));
}

export async function start(flags: StartFlags, ctx: Context): Promise<number> {
  const { settings } = ctx;
  const plan = planVm(flags, hostFacts(), { bridge: settings.bridge, qemu: settings.qemu }, randomUUID);
  resolveMedia(plan);
  if (flags.dryRun) return dryRun(plan, flags, ctx);
  if (flags.json) throw new UncloudError('USAGE', '--json goes with --dry-run', 2);

  const { prepareVm, superviseVm } = await import('../../qemu/launcher.js');
  const { ownerOf } = await import('../../system/proc.js');
  const deps = { store: await ctx.store(), pool: ctx.pool, runDir: settings.runDir, bridgeExists, note: ctx.err };
  if (plan.accelNote) ctx.err(plan.accelNote);
  const vm = await prepareVm(plan, deps, [ownerOf(process.pid)]);
  for (const nic of vm.spec.nics) {
    ctx.err(`VM ${vm.spec.name} (${vm.spec.uuid}): nic${nic.index} ${nic.mac} on ${nic.bridge} (tap ${nic.tap})`);
  }
  if (!vm.spec.console) ctx.err(`serial console: ${vm.spec.serialLog}`);
  return superviseVm(vm, deps);
}

async function dryRun(plan: VmPlan, flags: StartFlags, ctx: Context): Promise<number> {
  const store = await ctx.store();
  const auto = plan.nics.filter((n) => n.mac === undefined).length;
  const next = auto > 0 ? await store.peek(ctx.pool, auto) : [];
  const macs = plan.nics.map((n) => n.mac ?? next.shift()!);
  const spec = specFor(plan, macs, vmRunFiles(ctx.settings.runDir, plan.name));
  const argv = buildQemuArgv(spec);
  if (flags.json) {
    const nics = spec.nics.map((n, i) => ({
      mac: n.mac,
      tap: n.tap,
      bridge: n.bridge,
      tentative: plan.nics[i]!.mac === undefined,
    }));
    ctx.out(JSON.stringify({ argv, uuid: spec.uuid, name: spec.name, accel: spec.accel, nics }, null, 2));
  } else {
    ctx.out(formatCommand(argv, shellQuote));
  }
  if (plan.accelNote) ctx.err(plan.accelNote);
  for (const nic of spec.nics) {
    if (!bridgeExists(nic.bridge)) ctx.err(`note: bridge ${nic.bridge} does not exist; start would refuse to run`);
  }
  if (auto > 0) ctx.err(`dry run: nothing reserved; ${auto === 1 ? 'the MAC shown is' : 'MACs shown are'} what the pool would give next (tentative)`);
  return 0;
}
