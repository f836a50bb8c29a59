/** Commander wiring only: flags, help texts, and which command module runs. Modules load lazily. */
import { Command, Option } from 'commander';
import type { Overrides } from '../system/config.js';
import { type Context, makeContext } from './context.js';

export interface ProgramResult {
  exitCode: number;
}

const collect = (value: string, prev: string[] = []): string[] => [...prev, value];

export function buildProgram(result: ProgramResult): Command {
  const program = new Command('uncloud-vm');
  program
    .description('Start QEMU virtual machines on an uncloud host, with MAC addresses from a safe pool.')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .showSuggestionAfterError(true)
    .option('--config <file>', 'config file (JSON)', undefined)
    .option('--state-dir <dir>', 'where the MAC pool lives (default /var/lib/uncloud-vm as root)')
    .option('--run-dir <dir>', 'where running VMs keep sockets and scripts (default /run/uncloud-vm as root)')
    .option('--prefix <octets>', 'MAC pool prefix, 1 to 5 octets (default 42:00:00)')
    .option('--force-prefix', 'accept a multicast or globally administered prefix')
    .option('--store <store>', "MAC pool store: 'file' (default)")
    .addHelpText(
      'after',
      `
Settings come from /etc/uncloud-vm/config.json (or --config), then UNCLOUD_VM_* environment variables
(UNCLOUD_VM_STATE_DIR, UNCLOUD_VM_RUN_DIR, UNCLOUD_VM_PREFIX, UNCLOUD_VM_BRIDGE, UNCLOUD_VM_QEMU,
UNCLOUD_VM_STORE, UNCLOUD_VM_CONFIG), then flags.

Examples:
  uncloud-vm start --dry-run --memory 1024 --cores 2
  uncloud-vm start --name web1 --memory 2048 --cores 2 --disk /var/lib/vms/web1.qcow2 --nic bridge=br0
  uncloud-vm mac allocate
  uncloud-vm list`,
    );

  const run = (load: () => Promise<(ctx: Context) => Promise<number>>) => async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const globals = cmd.optsWithGlobals() as Record<string, unknown>;
    const flags: Overrides = {};
    if (globals.config !== undefined) flags.config = globals.config as string;
    if (globals.stateDir !== undefined) flags.stateDir = globals.stateDir as string;
    if (globals.runDir !== undefined) flags.runDir = globals.runDir as string;
    if (globals.prefix !== undefined) flags.prefix = globals.prefix as string;
    if (globals.forcePrefix) flags.forcePrefix = true;
    if (globals.store !== undefined) flags.store = globals.store as string;
    const fn = await load();
    result.exitCode = await fn(makeContext(flags));
  };

  program
    .command('start')
    .description('start a VM: lease its MACs, run qemu in the foreground, give everything back when it ends')
    .option('--memory <MiB>', 'guest memory in MiB', '1024')
    .option('--cores <n>', 'virtual CPUs', '1')
    .option('--name <name>', 'VM name (default uncloud-<uuid>); a named VM keeps its UUID')
    .option('--uuid <uuid>', 'VM UUID (default: v5 of --name, else random)')
    .addOption(new Option('--accel <accel>', 'accelerator').choices(['auto', 'kvm', 'tcg']).default('auto'))
    .option('--machine <type>', 'QEMU machine type', 'pc')
    .option('--cdrom <iso>', 'boot CD-ROM image')
    .option('--disk <path>', 'virtio disk image (repeatable)', collect)
    .option('--kernel <file>', 'boot this Linux kernel directly')
    .option('--initrd <file>', 'initramfs for --kernel')
    .option('--append <cmdline>', 'kernel command line for --kernel')
    .option('--nic <spec>', 'NIC: bridge=<br>[,mac=<mac>] (repeatable; default one NIC on the configured bridge)', collect)
    .option('--qemu <binary>', 'QEMU binary (default qemu-system-x86_64)')
    .option('--console', 'serial console on this terminal (default: to a log file in the run dir)')
    .option('--no-reboot', 'end the VM when the guest reboots')
    .option('--dry-run', 'print the qemu command and reserve nothing')
    .option('--json', 'with --dry-run: print the argv and NICs as JSON')
    .addHelpText(
      'after',
      `
The launcher stays in the foreground as qemu's parent. When qemu ends (shutdown, crash, kill) the VM's MACs
are released and its run files removed; SIGINT/SIGTERM stop qemu first. The exit code is qemu's.

Examples:
  uncloud-vm start --dry-run --memory 1024 --cores 2
  uncloud-vm start --dry-run --json --nic bridge=br0 --nic bridge=br1
  uncloud-vm start --name web1 --cdrom alpine.iso --nic bridge=br0,mac=42:00:00:00:00:10`,
    )
    .action(
      run(async () => {
        const { start } = await import('./commands/start.js');
        return (ctx) => start(startFlags(program.commands.find((c) => c.name() === 'start')!.opts()), ctx);
      }),
    );

  const mac = program.command('mac').description('the MAC pool: allocate, release, list, pool');
  mac
    .command('allocate')
    .description('lease the next free MAC and print it (held until released)')
    .option('--vm <id>', 'record which VM this MAC is for')
    .action(
      run(async () => {
        const { macAllocate } = await import('./commands/mac.js');
        return (ctx) => macAllocate(mac.commands.find((c) => c.name() === 'allocate')!.opts(), ctx);
      }),
    );
  mac
    .command('release')
    .description('free a leased MAC')
    .argument('<mac>', 'the MAC to free')
    .action(
      run(async () => {
        const { macRelease } = await import('./commands/mac.js');
        return (ctx) => macRelease(mac.commands.find((c) => c.name() === 'release')!.args[0]!, ctx);
      }),
    );
  mac
    .command('list')
    .description('every held MAC, with its VM, host, owner pids and state (held, live, stale)')
    .option('--json', 'machine-readable output')
    .action(
      run(async () => {
        const { macList } = await import('./commands/mac.js');
        return (ctx) => macList(mac.commands.find((c) => c.name() === 'list')!.opts(), ctx);
      }),
    );
  mac
    .command('pool')
    .description('the pool: prefix, size, held, free, cursor')
    .option('--json', 'machine-readable output')
    .action(
      run(async () => {
        const { macPool } = await import('./commands/mac.js');
        return (ctx) => macPool(mac.commands.find((c) => c.name() === 'pool')!.opts(), ctx);
      }),
    );

  program
    .command('list')
    .description('VMs that hold MACs, with state running, stale (owner gone) or held')
    .option('--json', 'machine-readable output')
    .action(
      run(async () => {
        const { list } = await import('./commands/list.js');
        return (ctx) => list(program.commands.find((c) => c.name() === 'list')!.opts(), ctx);
      }),
    );

  program
    .command('gc')
    .description('free leases whose owner process is gone (or its pid reused), and their run dirs')
    .action(
      run(async () => {
        const { gc } = await import('./commands/list.js');
        return (ctx) => gc({}, ctx);
      }),
    );

  return program;
}

function startFlags(o: Record<string, unknown>) {
  // commander turns --no-reboot into reboot=false.
  const { reboot, ...rest } = o;
  return { ...rest, noReboot: reboot === false } as import('./commands/start.js').StartFlags;
}
