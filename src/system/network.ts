/**
 * A VM network on this host (see core/network.ts): its bridge and VXLAN device, created on demand by the
 * first start that needs them, safe under concurrent starts (every step either succeeds or finds the
 * device another start made), and removed only by `network rm` while no VM uses them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UncloudError } from '../core/errors.js';
import { networkDevices, networkOfDevice, type NetworkPlan, parseUnderlay, planNetwork, type UnderlaySettings } from '../core/network.js';
import type { VmPlan } from '../core/vm-plan.js';
import { observeAll } from './vm-state.js';
import { withRunDirLock } from './run-dir.js';

const SYS = '/sys/class/net';

function run(cmd: 'ip' | 'bridge', args: string[]): { ok: boolean; err: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw new UncloudError('NO_IPROUTE', `cannot run ${cmd}: ${r.error.message}; install iproute2`);
  return { ok: r.status === 0, err: (r.stderr ?? '').trim().split('\n')[0] ?? '' };
}

function must(cmd: 'ip' | 'bridge', args: string[], what: string): void {
  const r = run(cmd, args);
  if (!r.ok) throw new UncloudError('NETWORK_FAILED', `${what} failed: ${cmd} ${args.join(' ')}: ${r.err}`);
}

const exists = (dev: string): boolean => existsSync(join(SYS, dev));
const readSys = (dev: string, file: string): string | null => {
  try {
    return readFileSync(join(SYS, dev, file), 'utf8').trim();
  } catch {
    return null;
  }
};
const isUp = (dev: string): boolean => (Number(readSys(dev, 'flags') ?? '0') & 1) === 1;
const masterOf = (dev: string): string | null => {
  try {
    return basename(readlinkSync(join(SYS, dev, 'master')));
  } catch {
    return null;
  }
};

/** The plan of a network on this host, from the host's underlay settings. */
export function networkPlanFor(id: number, settings: UnderlaySettings): NetworkPlan {
  const underlay = parseUnderlay(settings);
  const mtu = underlay.dev !== null ? Number(readSys(underlay.dev, 'mtu') ?? NaN) : NaN;
  if (underlay.dev !== null && !exists(underlay.dev)) {
    throw new UncloudError('NO_UNDERLAY', `underlay device ${underlay.dev} (vxlanDev) does not exist on this host`);
  }
  return planNetwork(id, underlay, Number.isFinite(mtu) ? mtu : null);
}

export interface EnsuredNetwork {
  plan: NetworkPlan;
  /** The guests' MTU: the one the VXLAN device has (set when it was made). */
  mtu: number;
  /** Devices this call made (empty when another start had made them). */
  created: string[];
}

/** Make sure network <id>'s bridge and VXLAN device exist, are joined and up. Idempotent; concurrent calls converge. */
export function ensureNetwork(id: number, settings: UnderlaySettings): EnsuredNetwork {
  const plan = networkPlanFor(id, settings);
  const { bridge, vxlan } = plan.devices;
  const created: string[] = [];
  const ready = exists(bridge) && exists(vxlan) && masterOf(vxlan) === bridge && isUp(vxlan) && isUp(bridge);
  if (!ready) {
    // Each step may lose a race to another start doing the same: "exists" is then success, if the device is ours.
    if (run('ip', plan.addVxlan).ok) created.push(vxlan);
    else checkVxlan(id, vxlan);
    for (const entry of plan.peerEntries) must('bridge', entry, `network ${id}: adding peer`);
    if (run('ip', plan.addBridge).ok) created.push(bridge);
    else if (!existsSync(join(SYS, bridge, 'bridge'))) {
      throw new UncloudError('NETWORK_CONFLICT', `network ${id}: device ${bridge} exists but is not a bridge; remove it or use another network id`);
    }
    for (const step of plan.settle) must('ip', step, `network ${id}`);
  }
  const mtu = Number(readSys(vxlan, 'mtu') ?? plan.mtu);
  return { plan, mtu, created };
}

/** A device named like our VXLAN device must be VXLAN with the network's VNI. */
function checkVxlan(id: number, dev: string): void {
  const info = linkInfo(dev);
  if (!info) throw new UncloudError('NETWORK_FAILED', `network ${id}: cannot create or find ${dev}`);
  if (info.info_kind !== 'vxlan' || info.info_data?.id !== id) {
    throw new UncloudError('NETWORK_CONFLICT', `network ${id}: device ${dev} exists but is not VXLAN with VNI ${id}; remove it or use another network id`);
  }
}

interface LinkInfo {
  info_kind?: string;
  info_data?: { id?: number; group6?: string; group?: string; local6?: string; local?: string; link?: string; port?: number };
}

function linkInfo(dev: string): LinkInfo | null {
  const r = spawnSync('ip', ['-d', '-j', 'link', 'show', 'dev', dev], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  try {
    return (JSON.parse(r.stdout) as { linkinfo?: LinkInfo }[])[0]?.linkinfo ?? null;
  } catch {
    return null;
  }
}

/**
 * Before a start: make (or, for a dry run, only plan) every network the VM's NICs name, and give each such
 * NIC the network's MTU so the guest's virtio-net learns it (host_mtu) and never sends what VXLAN must fragment.
 */
export function prepareNetworks(plan: VmPlan, settings: UnderlaySettings, note: (msg: string) => void, dryRun = false): void {
  const mtus = new Map<number, number>();
  for (const nic of plan.nics) {
    if (nic.network === undefined) continue;
    const id = nic.network;
    if (!mtus.has(id)) {
      if (dryRun) {
        const p = networkPlanFor(id, settings);
        const have = exists(p.devices.bridge) && exists(p.devices.vxlan);
        mtus.set(id, have ? Number(readSys(p.devices.vxlan, 'mtu') ?? p.mtu) : p.mtu);
        if (!have) note(`network ${id}: start would create bridge ${p.devices.bridge} and VXLAN ${p.devices.vxlan} (${floodText(p)}, MTU ${p.mtu})`);
      } else {
        const n = ensureNetwork(id, settings);
        mtus.set(id, n.mtu);
        if (n.created.length > 0) note(`network ${id}: created ${n.created.join(' and ')} (${floodText(n.plan)}, MTU ${n.mtu})`);
      }
    }
    nic.mtu = mtus.get(id)!;
  }
}

function floodText(p: NetworkPlan): string {
  return 'group' in p.flood ? `VNI ${p.id}, multicast ${p.flood.group}` : `VNI ${p.id}, peers ${p.flood.peers.join(',')}`;
}

export interface NetworkInfo {
  id: number;
  bridge: string | null;
  vxlan: string | null;
  vni: number | null;
  group: string | null;
  peers: string[];
  underlay: string | null;
  local: string | null;
  port: number | null;
  mtu: number | null;
  up: boolean;
  /** Devices on the bridge besides the VXLAN device (VM taps). */
  ports: string[];
  /** VMs of this host whose NICs are on the network (from their run records). */
  vms: string[];
}

/** VMs in the run dir that are alive (or starting: claimed, NICs not yet leased) with a NIC on this bridge. */
function vmsOn(bridge: string, runDir: string): string[] {
  return observeAll(runDir)
    .filter((v) => v.phase !== 'dead' && (v.record?.nics.some((n) => n.bridge === bridge) || v.record?.bridges?.includes(bridge)))
    .map((v) => v.name)
    .sort();
}

export function describeNetwork(id: number, runDir: string): NetworkInfo | null {
  const { bridge, vxlan } = networkDevices(id);
  const hasBridge = exists(bridge);
  const hasVxlan = exists(vxlan);
  if (!hasBridge && !hasVxlan) return null;
  const info = hasVxlan ? linkInfo(vxlan) : null;
  const d = info?.info_data ?? {};
  const group = d.group6 ?? d.group ?? null;
  let peers: string[] = [];
  if (hasVxlan) {
    const r = spawnSync('bridge', ['-j', 'fdb', 'show', 'dev', vxlan], { encoding: 'utf8' });
    try {
      peers = (JSON.parse(r.stdout || '[]') as { mac: string; dst?: string }[]).filter((f) => f.mac === '00:00:00:00:00:00' && f.dst && f.dst !== group).map((f) => f.dst!);
    } catch {
      peers = [];
    }
  }
  let ports: string[] = [];
  try {
    ports = readdirSync(join(SYS, bridge, 'brif')).filter((p) => p !== vxlan).sort();
  } catch {
    ports = [];
  }
  return {
    id,
    bridge: hasBridge ? bridge : null,
    vxlan: hasVxlan ? vxlan : null,
    vni: d.id ?? null,
    group,
    peers,
    underlay: d.link ?? null,
    local: d.local6 ?? d.local ?? null,
    port: d.port ?? null,
    mtu: hasVxlan ? Number(readSys(vxlan, 'mtu')) : Number(readSys(bridge, 'mtu')),
    up: (!hasBridge || isUp(bridge)) && (!hasVxlan || isUp(vxlan)),
    ports,
    vms: vmsOn(bridge, runDir),
  };
}

export function listNetworks(runDir: string): NetworkInfo[] {
  let names: string[] = [];
  try {
    names = readdirSync(SYS);
  } catch {
    names = [];
  }
  const ids = [...new Set(names.map(networkOfDevice).filter((id): id is number => id !== null))].sort((a, b) => a - b);
  return ids.map((id) => describeNetwork(id, runDir)).filter((n): n is NetworkInfo => n !== null);
}

/**
 * Remove a network's devices from this host; refused while a VM's tap is on it or a VM of this host names it.
 * Under the run dir's claim lock: a start claims its VM (naming its bridges) under the same lock and makes
 * sure of its networks after that, so a start and an rm never pass each other.
 */
export function removeNetwork(id: number, runDir: string): Promise<NetworkInfo> {
  return withRunDirLock(runDir, () => removeNetworkLocked(id, runDir));
}

function removeNetworkLocked(id: number, runDir: string): NetworkInfo {
  const info = describeNetwork(id, runDir);
  if (!info) throw new UncloudError('NO_NETWORK', `network ${id} does not exist on this host (no ${networkDevices(id).bridge} or ${networkDevices(id).vxlan})`);
  if (info.ports.length > 0 || info.vms.length > 0) {
    const users = [...(info.vms.length > 0 ? [`VM ${info.vms.join(', ')}`] : []), ...(info.ports.length > 0 ? [`ports ${info.ports.join(' ')}`] : [])];
    throw new UncloudError('NETWORK_IN_USE', `network ${id} is in use (${users.join('; ')}); stop its VMs first`);
  }
  if (info.vxlan) must('ip', ['link', 'delete', 'dev', info.vxlan], `network ${id}: removing ${info.vxlan}`);
  if (info.bridge) must('ip', ['link', 'delete', 'dev', info.bridge], `network ${id}: removing ${info.bridge}`);
  return info;
}
