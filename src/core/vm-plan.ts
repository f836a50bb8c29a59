/**
 * The VM plan: start options as the user typed them → a validated plan → the VmSpec the argv builder takes.
 * Pure: host facts, defaults and the random UUID come in as arguments.
 */
import { type DiskRequest, parseDisk } from './disk-spec.js';
import { printable, usageError } from './errors.js';
import { type NicRequest, parseNic, validateBridge } from './nic-request.js';
import { type CloudInitRequest, parseCloudInit } from './nocloud.js';
import type { Accel, DiskSpec, NicSpec, VmSpec } from './qemu-argv.js';
import { MAX_NICS, tapName } from './tap-name.js';
import type { VmLogFiles, VmRunFiles } from './vm-files.js';
import { type UuidSource, validateName, validateUuid } from './vm-identity.js';
import { type HostFacts, parseAccel, parseCores, parseMemory, validateCpu } from './vm-resources.js';
import { CONTROL_RE } from './quote.js';

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

export interface VmPlan {
  name: string;
  /** The user gave --name: the VM keeps its identity (UUID, MACs) across restarts. */
  named: boolean;
  uuid: string;
  accel: Accel;
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

const MACHINE_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;

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
