/**
 * VmSpec → qemu argv. Pure: the same spec always gives the same argv, and no user value can add an
 * argument or a QEMU sub-option (values inside option lists have their commas doubled).
 */
import type { CacheMode, DiskFormat } from './disk-spec.js';
import { qemuOptValue as q } from './quote.js';

/** The accelerator qemu runs the guest with. */
export type Accel = 'kvm' | 'tcg';

export interface NicSpec {
  index: number;
  mac: string;
  tap: string;
  bridge: string;
  ifup: string;
  ifdown: string;
  /** Anti-spoofing rules on the tap (rendered into ifup/ifdown; not part of the argv). */
  filter?: boolean;
  /** The MTU virtio-net offers the guest (VXLAN networks: what fits the underlay). */
  mtu?: number;
}

export interface DiskSpec {
  path: string;
  format: DiskFormat;
  readonly: boolean;
  cache?: CacheMode;
}

export interface VmSpec {
  qemu: string;
  name: string;
  uuid: string;
  machine: string;
  accel: Accel;
  memoryMiB: number;
  cores: number;
  nics: NicSpec[];
  cdrom?: string;
  disks: DiskSpec[];
  kernel?: string;
  initrd?: string;
  append?: string;
  /** uncloud-vm's own QMP socket: stop, status and the power verbs never wait behind another client. */
  qmpSocket: string;
  /** A second QMP socket, left free for the operator's tools. */
  operatorQmpSocket: string;
  pidfile: string;
  /** Serial console on the launcher's terminal; otherwise on consoleSocket for `uncloud-vm console`. */
  console: boolean;
  consoleSocket: string;
  /** Everything the guest writes on its serial port is appended here too, attached or not. */
  serialLog: string;
  noReboot: boolean;
  cpu?: string;
  /** A VNC display on this unix socket; without it, no display at all. */
  vncSocket?: string;
  /** A NoCloud seed image, attached read-only after the disks. */
  seed?: string;
}

/** The chardev of the serial port: `console` asks QMP whether someone is attached to it. */
export const SERIAL_CHARDEV = 'serial0';

export function buildQemuArgv(spec: VmSpec): string[] {
  const argv = [
    spec.qemu,
    '-name', q(spec.name),
    '-uuid', spec.uuid,
    '-machine', `${q(spec.machine)},accel=${spec.accel}`,
    '-m', String(spec.memoryMiB),
    '-smp', String(spec.cores),
  ];
  if (spec.cpu !== undefined) argv.push('-cpu', spec.cpu);
  argv.push('-display', 'none');
  if (spec.vncSocket !== undefined) argv.push('-vnc', `unix:${q(spec.vncSocket)}`);
  argv.push('-monitor', 'none');
  const log = `logfile=${q(spec.serialLog)},logappend=on`;
  if (spec.console) {
    // What -serial mon:stdio does (serial and Ctrl-A c monitor on the terminal), plus the log.
    argv.push('-chardev', `stdio,id=${SERIAL_CHARDEV},mux=on,${log}`, '-serial', `chardev:${SERIAL_CHARDEV}`, '-mon', `chardev=${SERIAL_CHARDEV}`);
  } else {
    argv.push('-chardev', `socket,id=${SERIAL_CHARDEV},path=${q(spec.consoleSocket)},server=on,wait=off,${log}`, '-serial', `chardev:${SERIAL_CHARDEV}`);
  }
  argv.push('-qmp', `unix:${q(spec.qmpSocket)},server=on,wait=off`);
  argv.push('-qmp', `unix:${q(spec.operatorQmpSocket)},server=on,wait=off`);
  argv.push('-pidfile', spec.pidfile);
  for (const nic of spec.nics) {
    argv.push(
      '-netdev', `tap,id=net${nic.index},ifname=${q(nic.tap)},script=${q(nic.ifup)},downscript=${q(nic.ifdown)}`,
      '-device', `virtio-net-pci,netdev=net${nic.index},id=nic${nic.index},mac=${nic.mac}${nic.mtu !== undefined ? `,host_mtu=${nic.mtu}` : ''}`,
    );
  }
  if (spec.cdrom !== undefined) argv.push('-drive', `file=${q(spec.cdrom)},media=cdrom`);
  for (const disk of spec.disks) {
    const opts = [`file=${q(disk.path)}`, 'if=virtio', `format=${disk.format}`];
    if (disk.readonly) opts.push('readonly=on');
    if (disk.cache !== undefined) opts.push(`cache=${disk.cache}`);
    argv.push('-drive', opts.join(','));
  }
  if (spec.seed !== undefined) argv.push('-drive', `file=${q(spec.seed)},if=virtio,format=raw,readonly=on`);
  if (spec.kernel !== undefined) argv.push('-kernel', spec.kernel);
  if (spec.initrd !== undefined) argv.push('-initrd', spec.initrd);
  if (spec.append !== undefined) argv.push('-append', spec.append);
  if (spec.noReboot) argv.push('-no-reboot');
  return argv;
}

const FLAGS_WITHOUT_VALUE = new Set(['-no-reboot']);

/** The argv as a copy-pasteable shell command, one option with its value per line. */
export function formatCommand(argv: string[], quote: (w: string) => string): string {
  const lines: string[] = [];
  let i = 0;
  const head = argv[i++]!;
  lines.push(quote(head));
  while (i < argv.length) {
    const opt = argv[i++]!;
    const next = argv[i];
    if (next !== undefined && !FLAGS_WITHOUT_VALUE.has(opt)) {
      lines.push(`  ${quote(opt)} ${quote(next)}`);
      i++;
    } else {
      lines.push(`  ${quote(opt)}`);
    }
  }
  return lines.join(' \\\n');
}
