/** `uncloud-vm start`: plan, then print (--dry-run) or prepare and supervise the VM. */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { DEFAULT_STOP_TIMEOUT_S } from '../../core/defaults.js';
import { usageError } from '../../core/errors.js';
import { buildQemuArgv, formatCommand } from '../../core/qemu-argv.js';
import { shellQuote } from '../../core/quote.js';
import { vmLogFiles, vmRunFiles } from '../../core/vm-files.js';
import { specFor, type VmPlan } from '../../core/vm-plan.js';
import { prepareDisks, removeDisks } from '../../system/disk-image.js';
import { bridgeExists } from '../../system/host.js';
import { type HeldSignals, holdSignals } from '../../qemu/held-signals.js';
import { prepareNetworks } from '../../system/network.js';
import { nicAddressesOf } from '../../system/nic-addresses.js';
import { seedToolMissing } from '../../system/nocloud-seed.js';
import { addressLines } from '../addresses.js';
import type { Context } from '../context.js';
import type { Action } from './shared/action.js';
import { addStartOptions, type StartFlags, startFlags } from './shared/start-options.js';
import { checkNicMacs, launcherOwner, planFromFlags, prepareWithMedia, resolveMedia, sayWarnings, seedContent } from './shared/start-plan.js';
import { parseTimeout } from './shared/timeout.js';

export function define(program: Command, action: Action): void {
  addStartOptions(
    program
      .command('start')
      .description('start a VM: lease its MACs, run qemu, give everything back when it ends'),
  )
    .option('--console', "serial console on this terminal (default: on a socket for 'uncloud-vm console'); logged either way")
    .option('--detach', "run the VM in the background; return once qemu answers on QMP, and print the VM's name")
    .option('--dry-run', 'print the qemu command and reserve nothing')
    .option('--json', 'with --dry-run: the argv and NICs as JSON; with --detach: name, uuid, MACs and pid')
    .addHelpText(
      'after',
      `
The launcher stays in the foreground as qemu's parent. When qemu ends (shutdown, crash, kill) the VM's MACs
are released and its run files removed. Ctrl-C or SIGTERM stop the VM gracefully (ACPI power button over
QMP, up to --stop-timeout, then quit, then kill); a second one kills it. The exit code is qemu's.
SIGHUP does the same: a foreground start in an SSH session stops its VM when the session ends (nohup does
not help); use --detach, a unit, or tmux/screen for a VM that outlives the login.
A named VM comes back with the same UUID and, while no other VM holds them, the same MACs.
--disk new=<path> makes the qcow2 when it is missing and uses it as it is afterwards; a ',' in a path is
written ',,'. --cloud-init builds a NoCloud seed (label cidata) in the run dir at each start: instance-id
= the UUID, hostname = the name, the keys for the default user, DHCP on each NIC matched on its MAC.

Examples:
  uncloud-vm start --dry-run --memory 1024 --cores 2
  uncloud-vm start --dry-run --json --nic bridge=br0 --nic bridge=br1
  uncloud-vm start --name web1 --cdrom alpine.iso --nic bridge=br0,mac=42:00:00:00:00:10
  uncloud-vm start --name web1 --disk web1.qcow2 --nic bridge=br0,ip4=192.0.2.10,ip6=2001:db8:100::/64   # guard: these sources too
  uncloud-vm start --name web1 --disk web1.qcow2 --detach
  uncloud-vm start --name web1 --memory 2G --disk new=/var/lib/vms/web1.qcow2,backing=/var/lib/vms/debian-12.qcow2 \\
      --cloud-init ssh-keys=$HOME/.ssh/id_ed25519.pub --detach
  uncloud-vm start --name data1 --disk /srv/data1.img,format=raw,cache=none --disk /srv/iso.img,readonly=on
  uncloud-vm start --name inst --cdrom debian.iso --disk new=inst.qcow2,size=20G --vnc --cpu host --accel kvm
  vm=$(uncloud-vm start --kernel vmlinuz --initrd initrd.gz --detach)   # prints the VM's name`,
    )
    .action(action((_a, o, ctx) => start(startFlags(o), ctx)));
}

export async function start(flags: StartFlags, ctx: Context): Promise<number> {
  const { settings } = ctx;
  const plan = await planFromFlags(flags, ctx);
  resolveMedia(plan);
  const seed = seedContent(plan);
  checkNicMacs(plan, ctx.pool);
  if (flags.dryRun) {
    prepareNetworks(plan, settings, ctx.err, true);
    return dryRun(plan, flags, ctx);
  }
  if (flags.json && !flags.detach) throw usageError('--json goes with --dry-run or --detach');

  const stopTimeoutS = parseTimeout(flags.stopTimeout ?? String(DEFAULT_STOP_TIMEOUT_S), '--stop-timeout');
  if (flags.detach && plan.console) throw usageError('--console and --detach exclude each other');
  // From here a SIGINT/SIGTERM/SIGHUP does not cut the start half-way: what it took is given back first.
  const held = holdSignals();
  try {
    return await startVm(plan, seed, flags, stopTimeoutS, held, ctx);
  } finally {
    held.release();
  }
}

async function startVm(plan: VmPlan, seed: ReturnType<typeof seedContent>, flags: StartFlags, stopTimeoutS: number, held: HeldSignals, ctx: Context): Promise<number> {
  const { settings } = ctx;
  const { superviseVm } = await import('../../qemu/supervise-vm.js');
  const { runDetached } = await import('../../qemu/run-detached.js');
  const { selfCommand } = await import('../self.js');
  // A detached VM outlives this process: with etcd its leases must hang on the host agent's lease.
  const store = await ctx.store(flags.detach ? { requireAgent: true } : {});
  const deps = { store, pool: ctx.pool, runDir: settings.runDir, stateDir: settings.stateDir, host: settings.host, bridgeExists, ensureNetworks: (p: VmPlan) => prepareNetworks(p, settings, ctx.err), note: ctx.err, stopTimeoutS, bridges: settings.bridges };
  const { vm, created } = await prepareWithMedia(plan, seed, deps, {
    launcher: await launcherOwner(),
    managedBy: 'launcher',
    interrupted: () => held.signal,
    gate: !flags.detach,
    ...(flags.detach ? { releaseOnDown: [...selfCommand(settings), 'hook', 'release', plan.name] } : {}),
  });
  // Only once the start proceeds: a refused start prints its one error line and nothing else.
  sayWarnings(plan, ctx);
  for (const nic of vm.spec.nics) {
    ctx.err(`VM ${vm.spec.name} (${vm.spec.uuid}): nic${nic.index} ${nic.mac} on ${nic.bridge} (tap ${nic.tap})`);
  }
  if (!vm.spec.console) ctx.err(`serial console: 'uncloud-vm console ${vm.spec.name}' (logged to ${vm.spec.serialLog})`);
  if (vm.spec.vncSocket !== undefined) ctx.err(`VNC display: ${vm.spec.vncSocket}`);
  if (flags.detach) {
    const qemu = await runDetached(vm, deps, undefined, () => held.signal).catch((err: unknown) => {
      removeDisks(created);
      throw err;
    });
    ctx.err(`VM ${vm.spec.name} runs in the background (qemu pid ${qemu.pid}); stop it with 'uncloud-vm stop ${vm.spec.name}'`);
    // stdout is for scripts: the name (or, with --json, what identifies the VM).
    const macs = vm.spec.nics.map((n) => n.mac);
    ctx.out(flags.json ? JSON.stringify({ name: vm.spec.name, uuid: vm.spec.uuid, macs, pid: qemu.pid }) : vm.spec.name);
    return 0;
  }
  return superviseVm(vm, deps, held);
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
