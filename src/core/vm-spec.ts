/**
 * Options as the user typed them → a validated VM plan → a VmSpec for the argv builder.
 * Pure: host facts, defaults and the random UUID come in as arguments.
 */
import { join } from 'node:path';
import { type DiskRequest, formatDisk, parseDisk } from './disk-spec.js';
import { printable, usageError } from './errors.js';
import { formatCidr, parseCidr } from './ip.js';
import { formatMac, parseMac, validateGuestMac } from './mac.js';
import { networkDevices, parseNetworkId } from './network.js';
import type { NicGuardOptions } from './nic-guard-rules.js';
import { type CloudInitRequest, formatCloudInit, parseCloudInit } from './nocloud.js';
import type { DiskSpec, NicSpec, VmSpec } from './qemu-argv.js';
import { MAX_NICS, tapName } from './tap-name.js';

/** Namespace of the v5 UUIDs derived from VM names: a named VM keeps its UUID. */
export const NAME_NAMESPACE = 'e8a3ffe0-78d6-4e36-9d77-c171da80f6f8';

export interface StartOptions {
  memory?: string;
  cores?: string;
  name?: string;
  uuid?: string;
  accel?: string;
  machine?: string;
  cdrom?: string;
  disk?: string[];
  kernel?: string;
  initrd?: string;
  append?: string;
  nic?: string[];
  qemu?: string;
  console?: boolean;
  noReboot?: boolean;
  cpu?: string;
  vnc?: boolean;
  cloudInit?: string;
}

export interface HostFacts {
  totalMemoryMiB: number;
  cpus: number;
  kvmUsable: boolean;
}

export interface NicRequest {
  index: number;
  bridge: string;
  /** A specific MAC the user asked for. */
  mac?: string;
  /** The NIC guard (nftables bridge rules): source MAC, RA/DHCP servers, IP and neighbour anti-spoofing. */
  filter: boolean;
  /** On uncloud network <id> (VXLAN): the bridge is that network's, made on demand. */
  network?: number;
  /** The guest's MTU (virtio-net host_mtu), set from the network before the start. */
  mtu?: number;
  /** IPv4 addresses/prefixes the NIC may send from (canonical); none given: IPv4 is not address-filtered. */
  ip4: string[];
  /** Extra IPv6 addresses/prefixes the NIC may send from (a routed /64, say), canonical. */
  ip6: string[];
  /** Any address in the network's prefixes, not only the EUI-64 one (RFC 7217 stable-privacy guests). */
  ip6Any: boolean;
}

export interface VmPlan {
  name: string;
  /** The user gave --name: the VM keeps its identity (UUID, MACs) across restarts. */
  named: boolean;
  uuid: string;
  accel: 'kvm' | 'tcg';
  /** Set when accel was chosen automatically, to tell the user why. */
  accelNote?: string;
  machine: string;
  memoryMiB: number;
  cores: number;
  nics: NicRequest[];
  cdrom?: string;
  disks: DiskRequest[];
  kernel?: string;
  initrd?: string;
  append?: string;
  qemu: string;
  console: boolean;
  noReboot: boolean;
  /** QEMU CPU model, with optional features (host, max, Skylake-Client,-hle). */
  cpu?: string;
  /** A VNC display on a unix socket in the VM's run dir. */
  vnc: boolean;
  /** Build a NoCloud seed and attach it read-only. */
  cloudInit?: CloudInitRequest;
  /** Things allowed but worth saying (stderr), e.g. more cores than the host has. */
  warnings: string[];
}

/** What a VM name may be; also what `stop`/`status` accept besides a UUID. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const BRIDGE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const MACHINE_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
/** A QEMU CPU model and optional features: host, max, Skylake-Client-v4,-hle,+pcid, host,kvm=off. */
const CPU_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(,[+-]?[A-Za-z0-9][A-Za-z0-9._-]{0,63}(=[A-Za-z0-9._-]{1,32})?)*$/;
/** QEMU's own upper bound for -smp on x86 machine types. */
export const MAX_CORES = 1024;

/** "1024" (MiB), "2048M", "1G", "1GiB" → MiB. */
export function parseMemory(text: string, host: HostFacts): number {
  const m = /^([0-9]+)(M|MiB|G|GiB)?$/i.exec(text);
  if (!m) {
    throw usageError(`invalid --memory '${printable(text)}': expected MiB (1024) or a size with M or G (2048M, 1G)`);
  }
  const mib = Number(m[1]) * (m[2] && /^g/i.test(m[2]) ? 1024 : 1);
  if (mib < 16) throw usageError(`invalid --memory ${text}: at least 16 MiB`);
  if (mib > host.totalMemoryMiB) {
    throw usageError(`invalid --memory ${text}: this host has ${host.totalMemoryMiB} MiB in all`);
  }
  return mib;
}

/** More cores than the host has is allowed (QEMU overcommits): the caller gets a warning to print. */
export function parseCores(text: string, host: HostFacts): { cores: number; warning?: string } {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1 || Number(text) > MAX_CORES) {
    throw usageError(`invalid --cores '${printable(text)}': expected a whole number from 1 to ${MAX_CORES}`);
  }
  const cores = Number(text);
  if (cores > host.cpus) {
    return { cores, warning: `warning: --cores ${cores} is more than this host's ${host.cpus} CPUs; the guest's vCPUs will share them` };
  }
  return { cores };
}

/** --cpu: a model QEMU knows, with features; `host` passes the host CPU through and needs KVM. */
export function validateCpu(text: string, accel: 'kvm' | 'tcg'): string {
  if (!CPU_RE.test(text)) {
    throw usageError(`invalid --cpu '${printable(text)}': expected a QEMU CPU model such as host, max or Skylake-Client, optionally with ,+feature or ,-feature`);
  }
  if (text.split(',')[0] === 'host' && accel !== 'kvm') {
    throw usageError(`--cpu host needs KVM (the accelerator is ${accel}); use --cpu max under tcg`);
  }
  return text;
}

/** VM names end up in tap-free file names, QMP socket paths and systemd unit names. */
export function validateName(text: string): string {
  if (!NAME_RE.test(text)) {
    throw usageError(
      `invalid VM name '${printable(text)}': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return text;
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

export function validateUuid(text: string): string {
  if (!UUID_RE.test(text)) {
    throw usageError(`invalid --uuid '${printable(text)}': expected a UUID like 123e4567-e89b-42d3-a456-426614174000`);
  }
  return text.toLowerCase();
}

/** Where UUIDs come from: random for an unnamed VM, derived (v5 in NAME_NAMESPACE) for a named one. */
export interface UuidSource {
  random: () => string;
  forName: (name: string) => string;
}

export function validateBridge(text: string): string {
  if (!BRIDGE_RE.test(text)) {
    throw usageError(
      `invalid bridge name '${printable(text)}': use 1 to 15 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return text;
}

const NIC_USAGE = 'bridge=<bridge>|network=<id>[,mac=<mac>][,filter=on|off][,ip4=<addr>[/len]]...[,ip6=<addr>[/len]]...[,ip6any=on|off]';
const NIC_KEYS = 'bridge, network, mac, filter, ip4, ip6, ip6any';

/**
 * "--nic bridge=br0[,mac=42:00:00:00:00:07][,filter=off][,ip4=192.0.2.7][,ip6=2001:db8:7::/64][,ip6any=on]"
 * (a bare "br0" is read as bridge=br0; ip4 and ip6 may be repeated), or "--nic network=42[,…]" for uncloud
 * network 42 (its bridge ucbr42, made on demand).
 */
export function parseNic(text: string, index: number, defaultBridge: string): NicRequest {
  const nic: NicRequest = { index, bridge: defaultBridge, filter: true, ip4: [], ip6: [], ip6Any: false };
  if (text.trim() === '') throw usageError(`invalid --nic '': expected ${NIC_USAGE}`);
  const onOff = (key: string, value: string): boolean => {
    if (value !== 'on' && value !== 'off') throw usageError(`invalid --nic '${printable(text)}': ${key} is on or off`);
    return value === 'on';
  };
  let where: string | undefined;
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? 'bridge' : part.slice(0, eq);
    const value = eq < 0 ? part : part.slice(eq + 1);
    if ((key === 'bridge' || key === 'network') && where !== undefined) {
      throw usageError(`invalid --nic '${printable(text)}': give one of bridge= or network=, once`);
    }
    if (key === 'bridge') {
      nic.bridge = validateBridge(value);
      where = key;
    } else if (key === 'network') {
      nic.network = parseNetworkId(value);
      nic.bridge = networkDevices(nic.network).bridge;
      where = key;
    } else if (key === 'mac') {
      const mac = parseMac(value);
      validateGuestMac(mac, value);
      nic.mac = formatMac(mac);
    } else if (key === 'filter') nic.filter = onOff(key, value);
    else if (key === 'ip6any') nic.ip6Any = onOff(key, value);
    else if (key === 'ip4') nic.ip4.push(formatCidr(parseCidr(value, 4, '--nic ip4')));
    else if (key === 'ip6') nic.ip6.push(formatCidr(parseCidr(value, 6, '--nic ip6')));
    else throw usageError(`invalid --nic '${printable(text)}': unknown key '${printable(key)}'; allowed: ${NIC_KEYS}`);
  }
  if (!nic.filter && (nic.ip4.length > 0 || nic.ip6.length > 0 || nic.ip6Any)) {
    throw usageError(`invalid --nic '${printable(text)}': ip4, ip6 and ip6any configure the guard, which filter=off turns off`);
  }
  return nic;
}

/** A NIC request as --nic text again (what a generated unit passes to `hook prepare`). */
export function nicText(nic: NicRequest): string {
  const parts = [nic.network !== undefined ? `network=${nic.network}` : `bridge=${nic.bridge}`];
  if (nic.mac !== undefined) parts.push(`mac=${nic.mac}`);
  if (!nic.filter) parts.push('filter=off');
  for (const a of nic.ip4) parts.push(`ip4=${a}`);
  for (const a of nic.ip6) parts.push(`ip6=${a}`);
  if (nic.ip6Any) parts.push('ip6any=on');
  return parts.join(',');
}

export function guardOptions(nic: NicRequest): NicGuardOptions {
  return { filter: nic.filter, ip4: nic.ip4, ip6: nic.ip6, ip6Any: nic.ip6Any };
}

function parseAccel(text: string, host: HostFacts): { accel: 'kvm' | 'tcg'; note?: string } {
  if (text === 'kvm' || text === 'tcg') return { accel: text };
  if (text === 'auto') {
    return host.kvmUsable
      ? { accel: 'kvm', note: 'accel auto: using kvm (/dev/kvm is usable)' }
      : { accel: 'tcg', note: 'accel auto: using tcg (/dev/kvm is not usable)' };
  }
  throw usageError(`invalid --accel '${printable(text)}': expected auto, kvm or tcg`);
}

function validateText(flag: string, text: string): string {
  if (text === '' || CONTROL_RE.test(text)) {
    throw usageError(`invalid ${flag} '${printable(text)}': must be non-empty and free of control characters`);
  }
  return text;
}

export function planVm(
  opts: StartOptions,
  host: HostFacts,
  defaults: { bridge: string; qemu: string },
  uuids: UuidSource,
): VmPlan {
  const name = opts.name !== undefined ? validateName(opts.name) : undefined;
  const uuid =
    opts.uuid !== undefined ? validateUuid(opts.uuid) : name !== undefined ? uuids.forName(name) : uuids.random();
  const accel = parseAccel(opts.accel ?? 'auto', host);
  const machine = opts.machine ?? 'pc';
  if (!MACHINE_RE.test(machine)) {
    throw usageError(`invalid --machine '${printable(machine)}': expected a QEMU machine type such as pc or q35`);
  }
  const nicTexts = opts.nic && opts.nic.length > 0 ? opts.nic : [`bridge=${defaults.bridge}`];
  if (nicTexts.length > MAX_NICS) throw usageError(`too many --nic options (${nicTexts.length}): at most ${MAX_NICS}`);
  const nics = nicTexts.map((t, i) => parseNic(t, i, validateBridge(defaults.bridge)));
  const macs = nics.flatMap((n) => (n.mac ? [n.mac] : []));
  const dup = macs.find((m, i) => macs.indexOf(m) !== i);
  if (dup) throw usageError(`MAC ${dup} is given to more than one --nic`);
  const cores = parseCores(opts.cores ?? '1', host);
  const plan: VmPlan = {
    name: name ?? `uncloud-${uuid}`,
    named: name !== undefined,
    uuid,
    accel: accel.accel,
    machine,
    memoryMiB: parseMemory(opts.memory ?? '1024', host),
    cores: cores.cores,
    nics,
    disks: (opts.disk ?? []).map(parseDisk),
    qemu: validateText('--qemu', opts.qemu ?? defaults.qemu),
    console: opts.console ?? false,
    noReboot: opts.noReboot ?? false,
    vnc: opts.vnc ?? false,
    warnings: cores.warning ? [cores.warning] : [],
  };
  if (opts.cpu !== undefined) plan.cpu = validateCpu(opts.cpu, plan.accel);
  if (opts.cloudInit !== undefined) plan.cloudInit = parseCloudInit(opts.cloudInit);
  const paths = plan.disks.map((d) => d.path);
  const twice = paths.find((p, i) => paths.indexOf(p) !== i);
  if (twice !== undefined) throw usageError(`--disk ${printable(twice)} is given twice`);
  if (accel.note) plan.accelNote = accel.note;
  if (opts.cdrom !== undefined) plan.cdrom = validateText('--cdrom', opts.cdrom);
  if (opts.kernel !== undefined) plan.kernel = validateText('--kernel', opts.kernel);
  if (opts.initrd !== undefined) plan.initrd = validateText('--initrd', opts.initrd);
  if (opts.append !== undefined) plan.append = validateText('--append', opts.append);
  if (plan.initrd !== undefined && plan.kernel === undefined) throw usageError('--initrd needs --kernel');
  if (plan.append !== undefined && plan.kernel === undefined) throw usageError('--append needs --kernel');
  return plan;
}

/** Where a VM's run files live: one directory per VM under the run dir. */
export interface VmRunFiles {
  dir: string;
  /** The qemu command as a shell script that execs qemu (what a systemd unit runs). */
  execScript: string;
  /** uncloud-vm's own QMP socket. */
  qmpSocket: string;
  /** The QMP socket left for the operator. */
  operatorQmpSocket: string;
  /** The serial console, for `uncloud-vm console`. */
  consoleSocket: string;
  pidfile: string;
  /** The VNC display's socket (--vnc). */
  vncSocket: string;
  /** The NoCloud seed image (--cloud-init), built at each start. */
  seed: string;
  record: string;
  ifup: (index: number) => string;
  ifdown: (index: number) => string;
}

export function vmRunFiles(runDir: string, name: string): VmRunFiles {
  const dir = join(runDir, name);
  return {
    dir,
    execScript: join(dir, 'exec.sh'),
    qmpSocket: join(dir, 'qmp.sock'),
    operatorQmpSocket: join(dir, 'qmp-operator.sock'),
    consoleSocket: join(dir, 'console.sock'),
    pidfile: join(dir, 'qemu.pid'),
    record: join(dir, 'vm.json'),
    vncSocket: join(dir, 'vnc.sock'),
    seed: join(dir, 'seed.iso'),
    ifup: (i) => join(dir, `ifup-${i}.sh`),
    ifdown: (i) => join(dir, `ifdown-${i}.sh`),
  };
}

/**
 * A VM's logs: on the state side, so they outlive the run dir (removed when the VM ends) and a reboot of the
 * host; kept across restarts of the VM, and removed only by `forget`.
 */
export interface VmLogFiles {
  dir: string;
  /** What the guest wrote on its serial console. */
  serial: string;
  /** qemu's stderr. */
  qemu: string;
}

export function vmLogFiles(stateDir: string, name: string): VmLogFiles {
  const dir = join(stateDir, 'logs', name);
  return { dir, serial: join(dir, 'serial.log'), qemu: join(dir, 'qemu.log') };
}

/** The spec qemu runs: the plan with its leased MACs, run files, log files and (claimed) tap names. */
export function specFor(plan: VmPlan, macs: string[], files: VmRunFiles, logs: VmLogFiles, taps?: string[]): VmSpec {
  const nics: NicSpec[] = plan.nics.map((nic, i) => ({
    index: nic.index,
    mac: macs[i]!,
    tap: taps?.[i] ?? tapName(plan.uuid, nic.index),
    bridge: nic.bridge,
    ifup: files.ifup(nic.index),
    ifdown: files.ifdown(nic.index),
    filter: nic.filter,
    ...(nic.mtu !== undefined ? { mtu: nic.mtu } : {}),
  }));
  const disks: DiskSpec[] = plan.disks.map((d) => {
    // The format is detected (or given) before a spec is made: qemu never guesses it.
    if (d.format === undefined) throw new Error(`specFor: the format of disk ${d.path} was not resolved`);
    const disk: DiskSpec = { path: d.path, format: d.format, readonly: d.readonly };
    if (d.cache !== undefined) disk.cache = d.cache;
    return disk;
  });
  const spec: VmSpec = {
    qemu: plan.qemu,
    name: plan.name,
    uuid: plan.uuid,
    machine: plan.machine,
    accel: plan.accel,
    memoryMiB: plan.memoryMiB,
    cores: plan.cores,
    nics,
    disks,
    qmpSocket: files.qmpSocket,
    operatorQmpSocket: files.operatorQmpSocket,
    pidfile: files.pidfile,
    console: plan.console,
    consoleSocket: files.consoleSocket,
    serialLog: logs.serial,
    noReboot: plan.noReboot,
  };
  if (plan.cdrom !== undefined) spec.cdrom = plan.cdrom;
  if (plan.kernel !== undefined) spec.kernel = plan.kernel;
  if (plan.initrd !== undefined) spec.initrd = plan.initrd;
  if (plan.append !== undefined) spec.append = plan.append;
  if (plan.cpu !== undefined) spec.cpu = plan.cpu;
  if (plan.vnc) spec.vncSocket = files.vncSocket;
  if (plan.cloudInit !== undefined) spec.seed = files.seed;
  return spec;
}

/**
 * The plan back as start options: planVm(planToStartOptions(plan)) is the same plan (a property test holds
 * it to that). A unit carries a VM this way, so its ExecStartPre rebuilds exactly the VM that was planned.
 */
export function planToStartOptions(plan: VmPlan): StartOptions {
  const opts: StartOptions = {
    name: plan.name,
    uuid: plan.uuid,
    memory: String(plan.memoryMiB),
    cores: String(plan.cores),
    // Chosen automatically: the unit chooses again on the host where it runs.
    accel: plan.accelNote !== undefined ? 'auto' : plan.accel,
    machine: plan.machine,
    qemu: plan.qemu,
    nic: plan.nics.map(nicText),
    disk: plan.disks.map(formatDisk),
    console: plan.console,
    noReboot: plan.noReboot,
  };
  if (plan.cpu !== undefined) opts.cpu = plan.cpu;
  if (plan.vnc) opts.vnc = true;
  if (plan.cloudInit !== undefined) opts.cloudInit = formatCloudInit(plan.cloudInit);
  if (plan.cdrom !== undefined) opts.cdrom = plan.cdrom;
  if (plan.kernel !== undefined) opts.kernel = plan.kernel;
  if (plan.initrd !== undefined) opts.initrd = plan.initrd;
  if (plan.append !== undefined) opts.append = plan.append;
  return opts;
}

/** Start options as command-line arguments (the inverse of the CLI's option parsing). */
export function startOptionsToArgs(opts: StartOptions): string[] {
  const args: string[] = [];
  const one = (flag: string, v: string | undefined) => {
    if (v !== undefined) args.push(flag, v);
  };
  one('--name', opts.name);
  one('--uuid', opts.uuid);
  one('--memory', opts.memory);
  one('--cores', opts.cores);
  one('--accel', opts.accel);
  one('--machine', opts.machine);
  one('--qemu', opts.qemu);
  for (const n of opts.nic ?? []) args.push('--nic', n);
  one('--cdrom', opts.cdrom);
  for (const d of opts.disk ?? []) args.push('--disk', d);
  one('--kernel', opts.kernel);
  one('--initrd', opts.initrd);
  one('--append', opts.append);
  if (opts.console) args.push('--console');
  if (opts.noReboot) args.push('--no-reboot');
  one('--cpu', opts.cpu);
  if (opts.vnc) args.push('--vnc');
  one('--cloud-init', opts.cloudInit);
  return args;
}
