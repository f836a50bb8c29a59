/**
 * uncloud's VM networks: network <id> is a VXLAN segment (VNI = id, UDP 4789) enslaved to a bridge on every
 * host, flooded by IPv6 multicast to ff05::<id in hex> or, where the underlay has no multicast, by head-end
 * replication to a static list of peers. Pure: names, validation, and the `ip`/`bridge` commands that make
 * a network on a host (src/system/network.ts runs them).
 */
import { isIP } from 'node:net';
import { printable, usageError, UncloudError } from './errors.js';

export const MAX_NETWORK_ID = 16_777_215;
export const VXLAN_PORT = 4789;
/** Bytes VXLAN adds around a guest's frame: outer IP (40 for IPv6, 20 for IPv4) + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = { 6: 70, 4: 50 } as const;
/** MTU assumed for an underlay we cannot read (no device named). */
export const DEFAULT_UNDERLAY_MTU = 1500;

/** Our network devices: "ucbr<id>" and "ucvx<id>", at most 12 characters (Linux allows 15). */
export const NETWORK_BRIDGE_RE = /^ucbr([1-9][0-9]{0,7})$/;
export const NETWORK_VXLAN_RE = /^ucvx([1-9][0-9]{0,7})$/;
const IFNAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

export function parseNetworkId(text: string): number {
  if (!/^[0-9]{1,8}$/.test(text) || Number(text) < 1 || Number(text) > MAX_NETWORK_ID) {
    throw usageError(`invalid network id '${printable(text)}': expected a whole number from 1 to ${MAX_NETWORK_ID} (the VXLAN VNI)`);
  }
  return Number(text);
}

export interface NetworkDevices {
  bridge: string;
  vxlan: string;
}

export function networkDevices(id: number): NetworkDevices {
  return { bridge: `ucbr${id}`, vxlan: `ucvx${id}` };
}

/** The network a device belongs to (bridge or VXLAN device name), or null for any other device. */
export function networkOfDevice(name: string): number | null {
  const m = NETWORK_BRIDGE_RE.exec(name) ?? NETWORK_VXLAN_RE.exec(name);
  if (!m) return null;
  const id = Number(m[1]);
  return id <= MAX_NETWORK_ID ? id : null;
}

/** uncloud's multicast group of a network: ff05::<id in hex>, e.g. 42 → ff05::2a, 16777215 → ff05::ff:ffff. */
export function multicastGroup(id: number): string {
  const high = Math.floor(id / 0x10000);
  const low = id % 0x10000;
  return high > 0 ? `ff05::${high.toString(16)}:${low.toString(16)}` : `ff05::${low.toString(16)}`;
}

/** This host's side of the underlay, from settings (vxlanDev, vxlanLocal, vxlanPeers, vxlanMtu). */
export interface Underlay {
  dev: string | null;
  local: string | null;
  /** Unicast head-end replication to these hosts; empty = multicast. */
  peers: string[];
  /** The guests' MTU when set explicitly; else the underlay's MTU minus VXLAN_OVERHEAD. */
  mtu: number | null;
  family: 4 | 6;
}

export interface UnderlaySettings {
  vxlanDev?: string | undefined;
  vxlanLocal?: string | undefined;
  vxlanPeers?: string | undefined;
  vxlanMtu?: string | undefined;
}

const bad = (key: string, text: string, allowed: string) =>
  new UncloudError('CONFIG', `invalid ${key} '${printable(text)}': ${allowed}`, 2);

export function parseUnderlay(s: UnderlaySettings): Underlay {
  const dev = s.vxlanDev ? s.vxlanDev : null;
  if (dev !== null && !IFNAME_RE.test(dev)) throw bad('vxlanDev', dev, 'expected a network device name of 1 to 15 characters');
  const local = s.vxlanLocal ? s.vxlanLocal : null;
  if (local !== null && isIP(local) === 0) throw bad('vxlanLocal', local, 'expected an IPv6 or IPv4 address of this host');
  const peers = (s.vxlanPeers ?? '').split(',').map((p) => p.trim()).filter(Boolean);
  for (const p of peers) if (isIP(p) === 0) throw bad('vxlanPeers', s.vxlanPeers!, `'${printable(p)}' is not an IP address; expected a comma-separated list of the other hosts' underlay addresses`);
  const families = new Set([...(local ? [isIP(local)] : []), ...peers.map((p) => isIP(p))]);
  if (families.size > 1) throw bad('vxlanPeers', s.vxlanPeers!, 'the peers and vxlanLocal must be all IPv6 or all IPv4');
  const family = (families.values().next().value ?? 6) as 4 | 6;
  if (peers.length === 0 && family === 4) {
    throw bad('vxlanLocal', local!, `multicast (uncloud's ff05::<id> groups) needs an IPv6 underlay; list vxlanPeers for an IPv4 one`);
  }
  let mtu: number | null = null;
  if (s.vxlanMtu) {
    const min = family === 6 ? 1280 : 576;
    if (!/^[0-9]{1,5}$/.test(s.vxlanMtu) || Number(s.vxlanMtu) < min || Number(s.vxlanMtu) > 65535) {
      throw bad('vxlanMtu', s.vxlanMtu, `expected the guests' MTU in bytes, ${min} to 65535`);
    }
    mtu = Number(s.vxlanMtu);
  }
  return { dev, local, peers, mtu, family };
}

/** The guests' MTU on a network: the explicit one, else what fits in one underlay packet after VXLAN's overhead. */
export function networkMtu(u: Underlay, underlayMtu: number | null): number {
  return u.mtu ?? (underlayMtu ?? DEFAULT_UNDERLAY_MTU) - VXLAN_OVERHEAD[u.family];
}

export interface NetworkPlan {
  id: number;
  devices: NetworkDevices;
  mtu: number;
  /** Where floods go: the multicast group, or the peers (head-end replication). */
  flood: { group: string } | { peers: string[] };
  /** Commands (argv after `ip`) that create the devices; each may fail with "exists" when another start won. */
  addVxlan: string[];
  addBridge: string[];
  /** `bridge` argv: one all-zeros FDB entry per peer. */
  peerEntries: string[][];
  /** `ip` argv run on every ensure: idempotent. */
  settle: string[][];
}

export function planNetwork(id: number, u: Underlay, underlayMtu: number | null): NetworkPlan {
  const devices = networkDevices(id);
  const mtu = networkMtu(u, underlayMtu);
  if (peerless(u) && u.dev === null) {
    throw new UncloudError(
      'CONFIG',
      `network ${id} floods to multicast group ${multicastGroup(id)}, which needs the underlay device: set vxlanDev (UNCLOUD_VM_VXLAN_DEV), or list the other hosts in vxlanPeers`,
      2,
    );
  }
  const addVxlan = [
    'link', 'add', devices.vxlan, 'mtu', String(mtu), 'type', 'vxlan', 'id', String(id), 'dstport', String(VXLAN_PORT),
    ...(peerless(u) ? ['group', multicastGroup(id)] : []),
    ...(u.local !== null ? ['local', u.local] : []),
    ...(u.dev !== null ? ['dev', u.dev] : []),
  ];
  // The host has no address on a VM network: no link-local address, no router solicitations from the host.
  const addBridge = ['link', 'add', devices.bridge, 'mtu', String(mtu), 'type', 'bridge'];
  return {
    id,
    devices,
    mtu,
    flood: peerless(u) ? { group: multicastGroup(id) } : { peers: u.peers },
    addVxlan,
    addBridge,
    peerEntries: u.peers.map((p) => ['fdb', 'append', '00:00:00:00:00:00', 'dev', devices.vxlan, 'dst', p]),
    settle: [
      ['link', 'set', devices.bridge, 'addrgenmode', 'none'],
      ['link', 'set', devices.vxlan, 'addrgenmode', 'none'],
      ['link', 'set', devices.vxlan, 'master', devices.bridge],
      ['link', 'set', devices.vxlan, 'up'],
      ['link', 'set', devices.bridge, 'up'],
    ],
  };
}

function peerless(u: Underlay): boolean {
  return u.peers.length === 0;
}
