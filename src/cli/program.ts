/** Commander wiring only: flags, help texts, and which command module runs. Modules load lazily. */
import { Command, Option } from 'commander';
import { DEFAULT_STOP_TIMEOUT_S } from '../core/defaults.js';
import type { Overrides } from '../system/config.js';
import { type Context, makeContext } from './context.js';

export interface ProgramResult {
  exitCode: number;
}

const collect = (value: string, prev: string[] = []): string[] => [...prev, value];

type Handler = (args: string[], opts: Record<string, unknown>, ctx: Context) => Promise<number>;

/** The "Examples:" block every verb's --help ends with. */
const examples = (...lines: string[]): string => `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}`;

/** The start options, shared by `start`, `unit` and the unit's `hook prepare`. */
export function addStartOptions(cmd: Command, withName = true): Command {
  cmd
    .option('--memory <size>', 'guest memory: MiB (1024) or with a unit (2048M, 1G)', '1024')
    .option('--cores <n>', 'virtual CPUs (more than the host has: allowed, with a warning)', '1');
  if (withName) cmd.option('--name <name>', 'VM name (default uncloud-<uuid>); a named VM keeps its UUID and MACs');
  return cmd
    .option('--uuid <uuid>', 'VM UUID (default: v5 of the name, else random)')
    .addOption(new Option('--accel <accel>', 'accelerator').choices(['auto', 'kvm', 'tcg']).default('auto'))
    .option('--machine <type>', 'QEMU machine type', 'pc')
    .option('--cdrom <iso>', 'boot CD-ROM image')
    .option('--disk <spec>', 'virtio disk: <path>[,format=raw|qcow2][,readonly=on][,cache=<mode>], or new=<path>,size=<n>G[,backing=<base>] to create a qcow2 (repeatable)', collect)
    .option('--kernel <file>', 'boot this Linux kernel directly')
    .option('--initrd <file>', 'initramfs for --kernel')
    .option('--append <cmdline>', 'kernel command line for --kernel')
    .option('--nic <spec>', 'NIC: bridge=<br>|network=<id>[,mac=<mac>][,filter=on|off][,ip4=<addr>[/len]][,ip6=<addr>[/len]][,ip6any=on] (repeatable; default one NIC on the configured bridge, network guard on: source MAC, no RA/DHCP server replies, IPv6 sources limited to link-local, EUI-64 and ip6=, IPv4 to ip4= when given; network=<id> is the VXLAN network <id>, made on demand)', collect)
    .option('--qemu <binary>', 'QEMU binary (default qemu-system-x86_64)')
    .option('--no-reboot', 'end the VM when the guest reboots')
    .option('--cpu <model>', 'QEMU CPU model, e.g. host (KVM only), max, Skylake-Client[,+feature|,-feature]')
    .option('--vnc', 'a VNC display on a unix socket in the VM\'s run dir (never a TCP port)')
    .option('--cloud-init <spec>', 'NoCloud first-boot seed: on, or ssh-keys=<file>[,user-data=<file>][,network=dhcp|none|<file>]')
    .option('--stop-timeout <s>', 'seconds a graceful stop waits for the guest to power off', String(DEFAULT_STOP_TIMEOUT_S));

}

/** commander turns --no-reboot into reboot=false. */
export function startFlags(o: Record<string, unknown>) {
  const { reboot, ...rest } = o;
  return { ...rest, noReboot: reboot === false } as import('./commands/start.js').StartFlags;
}

export function buildProgram(result: ProgramResult): Command {
  const program = new Command('uncloud-vm');
  program
    .description('Start QEMU virtual machines on an uncloud host, with MAC addresses from a safe pool.')
    .version('0.1.0')
    .exitOverride()
    // Errors are printed by main.ts as one line; help shown for a bare group verb goes to stdout like --help.
    .configureOutput({ outputError: () => undefined, writeErr: (text) => process.stdout.write(text) })
    .showSuggestionAfterError(true)
    .option('--config <file>', 'config file (JSON; default /etc/uncloud-vm/config.json)')
    .option('--state-dir <dir>', 'where the MAC pool lives (default /var/lib/uncloud-vm as root)')
    .option('--run-dir <dir>', 'where running VMs keep sockets and scripts (default /run/uncloud-vm as root)')
    .option('--prefix <octets>', 'MAC pool prefix, 1 to 5 octets (default 42:00:00)')
    .option('--force-prefix', 'accept a globally administered prefix (a multicast one is never accepted)')
    .option('--store <store>', "MAC pool store: 'file' (default) or etcd://host:port[,host:port…][/prefix][?ttl=s]")
    .addHelpText(
      'after',
      `
Settings come from /etc/uncloud-vm/config.json (or --config), then UNCLOUD_VM_* environment variables
(UNCLOUD_VM_STATE_DIR, UNCLOUD_VM_RUN_DIR, UNCLOUD_VM_PREFIX, UNCLOUD_VM_BRIDGE, UNCLOUD_VM_QEMU,
UNCLOUD_VM_STORE, UNCLOUD_VM_HOST, UNCLOUD_VM_CONFIG, UNCLOUD_VM_VXLAN_DEV, _LOCAL, _PEERS, _MTU), then flags. The etcd store also reads
UNCLOUD_VM_ETCD_CA, _CERT, _KEY (PEM files) and UNCLOUD_VM_ETCD_USER, _PASSWORD.

Examples:
  uncloud-vm start --dry-run --memory 1024 --cores 2
  uncloud-vm start --name web1 --memory 2048 --cores 2 --disk /var/lib/vms/web1.qcow2 --nic bridge=br0
  uncloud-vm unit web1 --memory 2048 --disk /var/lib/vms/web1.qcow2 --install --enable
  uncloud-vm stop web1
  uncloud-vm mac allocate
  uncloud-vm list`,
    );

  const action = (load: () => Promise<Handler>) => async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const globals = cmd.optsWithGlobals() as Record<string, unknown>;
    const flags: Overrides = {};
    if (globals.config !== undefined) flags.config = globals.config as string;
    if (globals.stateDir !== undefined) flags.stateDir = globals.stateDir as string;
    if (globals.runDir !== undefined) flags.runDir = globals.runDir as string;
    if (globals.prefix !== undefined) flags.prefix = globals.prefix as string;
    if (globals.forcePrefix) flags.forcePrefix = true;
    if (globals.store !== undefined) flags.store = globals.store as string;
    const handler = await load();
    const ctx = makeContext(flags);
    try {
      result.exitCode = await handler(cmd.args, cmd.opts(), ctx);
    } finally {
      await ctx.close();
    }
  };

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
    .action(
      action(async () => {
        const { start } = await import('./commands/start.js');
        return (_a, o, ctx) => start(startFlags(o), ctx);
      }),
    );

  program
    .command('stop')
    .description('stop a VM gracefully: ACPI power button, wait, then quit, then kill')
    .argument('<vm>', 'VM name or UUID')
    .option('--timeout <s>', 'seconds to wait for the guest to power off', String(DEFAULT_STOP_TIMEOUT_S))
    .option('--force', 'do not wait for the guest: quit qemu at once')
    .addHelpText('after', examples('uncloud-vm stop web1', 'uncloud-vm stop web1 --timeout 120', 'uncloud-vm stop web1 --force'))
    .action(
      action(async () => {
        const { stop } = await import('./commands/vm.js');
        return (a, o, ctx) => stop(a[0]!, o, ctx);
      }),
    );

  program
    .command('status')
    .description("a VM's state (from QMP), pid, uptime and NICs")
    .argument('<vm>', 'VM name or UUID')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm status web1', 'uncloud-vm status 8e098bf2-8b96-5c10-a89f-4ac2c1b57a2e --json'))
    .action(
      action(async () => {
        const { status } = await import('./commands/vm.js');
        return (a, o, ctx) => status(a[0]!, o, ctx);
      }),
    );

  program
    .command('console')
    .description('attach this terminal to the serial console of a running VM (Ctrl-] detaches)')
    .argument('<vm>', 'VM name or UUID')
    .addHelpText(
      'after',
      `
One console at a time: a second one is refused while another is attached. The guest's serial output is
logged whether anyone is attached or not ('uncloud-vm logs'). A VM started with 'start --console' has its
console on that terminal instead.

Examples:
  uncloud-vm console web1`,
    )
    .action(
      action(async () => {
        const { consoleVerb } = await import('./commands/console.js');
        return (a, _o, ctx) => consoleVerb(a[0]!, ctx);
      }),
    );

  const power = (name: string, description: string, example: string, load: () => Promise<(target: string, ctx: Context) => Promise<number>>) =>
    program
      .command(name)
      .description(description)
      .argument('<vm>', 'VM name or UUID')
      .addHelpText('after', `\nExamples:\n  ${example}`)
      .action(
        action(async () => {
          const verb = await load();
          return (a, _o, ctx) => verb(a[0]!, ctx);
        }),
      );
  program
    .command('reboot')
    .description('reboot a VM gracefully: ACPI power button, and when the guest has powered off, boot it again in the same qemu')
    .argument('<vm>', 'VM name or UUID')
    .option('--timeout <s>', 'seconds to wait for the guest to power off', String(DEFAULT_STOP_TIMEOUT_S))
    .addHelpText(
      'after',
      `
The VM keeps its qemu, MACs and taps. A guest that does not power off within --timeout is left running as
it was; 'uncloud-vm reset' resets it at once.

Examples:
  uncloud-vm reboot web1
  uncloud-vm reboot web1 --timeout 120`,
    )
    .action(
      action(async () => {
        const { reboot } = await import('./commands/power.js');
        return (a, o, ctx) => reboot(a[0]!, o, ctx);
      }),
    );
  power('reset', 'reset a VM at once, like its reset button (the guest is not asked)', 'uncloud-vm reset web1', async () => (await import('./commands/power.js')).reset);
  power('pause', "stop a VM's CPUs; it keeps its memory, MACs and taps", 'uncloud-vm pause web1', async () => (await import('./commands/power.js')).pause);
  power('resume', "run a paused VM's CPUs again", 'uncloud-vm resume web1', async () => (await import('./commands/power.js')).resume);

  program
    .command('logs')
    .description("a VM's serial console log, kept after it ended (--qemu: qemu's own messages)")
    .argument('<vm>', 'VM name or UUID')
    .option('-f, --follow', 'keep printing what is appended (Ctrl-C ends)')
    .option('--qemu', "qemu's stderr instead of the serial log")
    .addHelpText(
      'after',
      `
Logs live under the state dir (logs/<vm>/serial.log and qemu.log), are appended to on every start, and a log
over 4 MiB is rotated to <file>.1 when the VM starts. 'uncloud-vm forget' removes them.

Examples:
  uncloud-vm logs web1
  uncloud-vm logs web1 -f
  uncloud-vm logs web1 --qemu`,
    )
    .action(
      action(async () => {
        const { logs } = await import('./commands/logs.js');
        return (a, o, ctx) => logs(a[0]!, o, ctx);
      }),
    );

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
    .action(
      action(async () => {
        const { forget } = await import('./commands/forget.js');
        return (a, _o, ctx) => forget(a[0]!, ctx);
      }),
    );

  program
    .command('list')
    .description('VMs: running, stopped (named, holding nothing), stale (owner gone) or held (manual lease)')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm list', 'uncloud-vm list --json'))
    .action(
      action(async () => {
        const { list } = await import('./commands/list.js');
        return (_a, o, ctx) => list(o, ctx);
      }),
    );

  program
    .command('gc')
    .description('free leases whose owner process is gone (or its pid reused), and their run dirs')
    .addHelpText('after', examples('uncloud-vm gc', 'uncloud-vm --store etcd://10.0.0.1:2379 gc'))
    .action(
      action(async () => {
        const { gc } = await import('./commands/gc.js');
        return (_a, _o, ctx) => gc({}, ctx);
      }),
    );

  addStartOptions(
    program
      .command('unit')
      .description('a systemd unit for a VM: printed, or installed with --install')
      .argument('<name>', 'VM name (the unit is uncloud-vm-<name>.service)'),
    false,
  )
    .option('--user', "a user unit (the user's unit dir, systemctl --user)")
    .option('--install', 'write the unit file and reload systemd')
    .option('--enable', 'with --install: enable the unit')
    .addOption(new Option('--restart <policy>', 'restart the VM when qemu fails (on-failure) or whenever it ends (always)').choices(['no', 'on-failure', 'always']).default('no'))
    .addHelpText(
      'after',
      `
Under the unit, qemu is the service's main process: ExecStartPre leases the MACs and writes the qemu
command, ExecStart execs qemu, ExecStop stops the guest over QMP, ExecStopPost gives the MACs back however
the service ended. The unit records the state dir, run dir, prefix and store in force now.

Examples:
  uncloud-vm unit web1 --memory 2048 --disk /var/lib/vms/web1.qcow2
  uncloud-vm unit web1 --memory 2048 --disk /var/lib/vms/web1.qcow2 --install --enable
  systemctl start uncloud-vm-web1.service`,
    )
    .action(
      action(async () => {
        const { unit } = await import('./commands/unit.js');
        return (a, o, ctx) => unit(a[0]!, startFlags(o), ctx);
      }),
    );

  program
    .command('agent')
    .description('etcd store: keep this host\'s lease alive (one resident process per host)')
    .option('--unit', 'print a systemd unit for the agent instead of running it')
    .option('--user', 'with --unit: a user unit')
    .option('--install', 'with --unit: write it and reload systemd')
    .option('--enable', 'with --install: enable and start it')
    .addHelpText(
      'after',
      `
With the etcd store, the addresses of this host's running VMs hang on one etcd lease per host with a TTL
(?ttl= in the store URL, 30 s by default). The agent keeps it alive; if the host dies, its VMs' addresses
return to the pool after the TTL. VMs under systemd and detached VMs need the agent; a foreground start
without one keeps a lease of its own alive.

Examples:
  uncloud-vm --store etcd://10.0.0.1:2379 agent
  uncloud-vm --store etcd://10.0.0.1:2379 agent --unit --install --enable`,
    )
    .action(
      action(async () => {
        const { agent } = await import('./commands/agent.js');
        return (_a, o, ctx) => agent(o, ctx);
      }),
    );

  const mac = program
    .command('mac')
    .description('the MAC pool: allocate, release, list, pool')
    .addHelpText('after', examples('uncloud-vm mac allocate', 'uncloud-vm mac release 42:00:00:00:00:07', 'uncloud-vm mac list', 'uncloud-vm mac pool --json'));
  mac
    .command('allocate')
    .description('lease the next free MAC and print it (held until released)')
    .option('--vm <id>', 'record which VM this MAC is for')
    .addHelpText('after', examples('uncloud-vm mac allocate', 'uncloud-vm mac allocate --vm db1', 'mac=$(uncloud-vm mac allocate)'))
    .action(
      action(async () => {
        const { macAllocate } = await import('./commands/mac.js');
        return (_a, o, ctx) => macAllocate(o, ctx);
      }),
    );
  mac
    .command('release')
    .description('free a leased MAC (refused while a running VM uses it, unless --force)')
    .argument('<mac>', 'the MAC to free')
    .option('--force', 'free it even if a running VM uses it (that VM keeps using it: a conflict gc reports)')
    .addHelpText('after', '\nExamples:\n  uncloud-vm mac release 42:00:00:00:00:07\n  uncloud-vm mac release 42:00:00:00:00:07 --force   # a damaged or orphaned lease')
    .action(
      action(async () => {
        const { macRelease } = await import('./commands/mac.js');
        return (a, o, ctx) => macRelease(a[0]!, o as { force?: boolean }, ctx);
      }),
    );
  mac
    .command('list')
    .description('every held MAC, with its VM, host, owner pids and state (held, live, stale)')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm mac list', 'uncloud-vm mac list --json'))
    .action(
      action(async () => {
        const { macList } = await import('./commands/mac.js');
        return (_a, o, ctx) => macList(o, ctx);
      }),
    );
  mac
    .command('pool')
    .description('the pool: prefix, size, held, free, cursor')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm mac pool', 'uncloud-vm --prefix 42:10 mac pool --json'))
    .action(
      action(async () => {
        const { macPool } = await import('./commands/mac.js');
        return (_a, o, ctx) => macPool(o, ctx);
      }),
    );

  const network = program
    .command('network')
    .description('VM networks on this host: VXLAN segment <id> on bridge ucbr<id>, made by the first start that needs it')
    .addHelpText(
      'after',
      `
A start with --nic network=<id> (1 to 16777215) creates, if missing, VXLAN device ucvx<id> (VNI <id>, UDP 4789)
on the underlay and bridge ucbr<id>, and puts the NIC there. Floods go to multicast group ff05::<id in hex>
over vxlanDev, or to the hosts in vxlanPeers (for underlays without multicast). Guests get the MTU that fits
the underlay (vxlanDev's MTU minus 70 bytes for IPv6, or vxlanMtu). The devices stay after the VM ends.

Examples:
  UNCLOUD_VM_VXLAN_DEV=eth1 uncloud-vm start --name web1 --disk web1.qcow2 --nic network=42
  uncloud-vm network list
  uncloud-vm network show 42
  uncloud-vm network rm 42`,
    );
  network
    .command('list')
    .description('the networks on this host, their devices, flooding, MTU and VMs')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm network list', 'uncloud-vm network list --json'))
    .action(
      action(async () => {
        const { networkList } = await import('./commands/network.js');
        return (_a, o, ctx) => networkList(o, ctx);
      }),
    );
  network
    .command('show')
    .description('one network: VNI, multicast group or peers, underlay, MTU, ports, VMs')
    .argument('<id>', 'network id')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm network show 42', 'uncloud-vm network show 42 --json'))
    .action(
      action(async () => {
        const { networkShow } = await import('./commands/network.js');
        return (a, o, ctx) => networkShow(a[0]!, o, ctx);
      }),
    );
  network
    .command('rm')
    .description("remove a network's bridge and VXLAN device from this host (refused while a VM uses it)")
    .argument('<id>', 'network id')
    .addHelpText('after', examples('uncloud-vm network rm 42'))
    .action(
      action(async () => {
        const { networkRm } = await import('./commands/network.js');
        return (a, _o, ctx) => networkRm(a[0]!, ctx);
      }),
    );

  program
    .command('completion')
    .description('print a bash completion script (verbs, options, their values, VM names)')
    .argument('[shell]', 'bash (the only one)', 'bash')
    .addHelpText(
      'after',
      examples('source <(uncloud-vm completion bash)', 'uncloud-vm completion bash > /etc/bash_completion.d/uncloud-vm'),
    )
    .action(
      action(async () => {
        const { completion } = await import('./completion.js');
        return (a, _o, ctx) => completion(a[0], program, ctx);
      }),
    );

  // Run by generated units and by detached VMs' ifdown scripts, not by people.
  const hook = program.command('hook', { hidden: true }).description('steps run by systemd units and detached VMs');
  addStartOptions(hook.command('prepare').description('ExecStartPre: lease MACs, write the qemu command')).action(
    action(async () => {
      const { hookPrepare } = await import('./commands/start.js');
      return (_a, o, ctx) => hookPrepare(startFlags(o), ctx);
    }),
  );
  hook
    .command('adopt')
    .argument('<name>')
    .description('ExecStartPost: make qemu the owner of the leases')
    .action(
      action(async () => {
        const { hookAdopt } = await import('./commands/vm.js');
        return (a, _o, ctx) => hookAdopt(a[0]!, ctx);
      }),
    );
  hook
    .command('release')
    .argument('<name>')
    .argument('<mac>')
    .description("ifdown of a detached VM: give one NIC's MAC back")
    .action(
      action(async () => {
        const { hookRelease } = await import('./commands/vm.js');
        return (a, _o, ctx) => hookRelease(a[0]!, a[1]!, ctx);
      }),
    );
  hook
    .command('cleanup')
    .argument('<name>')
    .description('ExecStopPost: give back all the VM holds')
    .action(
      action(async () => {
        const { hookCleanup } = await import('./commands/vm.js');
        return (a, _o, ctx) => hookCleanup(a[0]!, ctx);
      }),
    );

  return program;
}
