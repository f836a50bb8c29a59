/** The start options, shared by `start`, `unit` and the unit's `hook prepare`, and the flags commander makes of them. */
import { type Command, Option } from 'commander';
import { DEFAULT_STOP_TIMEOUT_S } from '../../../core/defaults.js';
import type { StartOptions } from '../../../core/vm-plan.js';

export interface StartFlags extends StartOptions {
  dryRun?: boolean;
  json?: boolean;
  detach?: boolean;
  stopTimeout?: string;
}

const collect = (value: string, prev: string[] = []): string[] => [...prev, value];

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
export function startFlags(o: Record<string, unknown>): StartFlags {
  const { reboot, ...rest } = o;
  return { ...rest, noReboot: reboot === false } as StartFlags;
}
