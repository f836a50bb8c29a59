/**
 * The NIC guard: which addresses a NIC may send from (its allowed set), and the nftables batch that
 * enforces it. One table for every guarded NIC on a host: two base chains send frames from a guarded
 * interface (one set lookup) to one chain whose rules look the interface up in sets keyed by it (its MAC,
 * its allowed addresses), so a packet costs the same however many NICs are guarded, and the ruleset does not
 * grow with them. A NIC is its elements in those sets: added, and removed, in one nft batch.
 * (Incus lays one base chain per device; each packet would then walk every device's chain.)
 *
 * Pure. Every value in the batch is re-printed from a parsed number (MACs, addresses) or checked against
 * GUARD_IFACE_RE (interface names), so nothing a user typed is ever parsed by nft as syntax.
 */
import { eui64Address, linkLocalAddress } from './eui64.js';
import { printable, usageError } from './errors.js';
import { BITS, type Cidr, formatCidr, minimalCover, parseCidr } from './ip.js';
import { formatMac } from './mac.js';

export const GUARD_TABLE = 'uncloud_vm';
/** Interface names the guard accepts: they are written into the batch as quoted set keys. */
export const GUARD_IFACE_RE = /^[A-Za-z0-9_]{1,15}$/;

/** What the operator declared for a bridge's network (config "bridges"). */
export interface BridgeConfig {
  /** IPv6 /64s of the network: each NIC may use its EUI-64 address in each (or, with ip6any, any address). */
  prefixes: string[];
  /** The network carries no IPv4: a NIC given no ip4= sends no IPv4 or ARP at all. */
  ipv6Only: boolean;
}

/** The network a NIC's bridge is on, as seen at start: prefixes from config or from the bridge's own addresses. */
export interface BridgeFacts {
  prefixes: string[];
  /** Where the prefixes came from. */
  source: 'config' | 'bridge' | 'none';
  ipv6Only: boolean;
}

/** Per-NIC guard options from --nic. Addresses are kept canonical (formatCidr). */
export interface NicGuardOptions {
  filter: boolean;
  ip4: string[];
  ip6: string[];
  ip6Any: boolean;
}

/** What IPv4 a NIC may send: these sources, anything (not address-filtered), or nothing (IPv6-only network). */
export type Ipv4Rule = string[] | 'any' | 'none';

/** A NIC's IPv6 addresses (known from its MAC before it boots) and what its guard lets it send. */
export interface NicAddresses {
  linkLocal: string;
  /** Its SLAAC (EUI-64) address in each prefix of its network. */
  eui64: string[];
  prefixSource: BridgeFacts['source'];
  guard: 'on' | 'off';
  /** null when the guard is off. */
  allowed: { ipv6: string[]; ipv4: Ipv4Rule } | null;
}

const IPV6_UNSPECIFIED: Cidr = { family: 6, addr: 0n, len: 128 };
const IPV4_UNSPECIFIED: Cidr = { family: 4, addr: 0n, len: 32 };

/** The config file's "bridges": { "<bridge>": { "prefixes": ["2001:db8:1::/64"], "ipv6Only": true } }. */
export function parseBridges(data: unknown, where: string): Record<string, BridgeConfig> {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw usageError(`${where}: 'bridges' must be an object of bridge names, e.g. {"br0": {"prefixes": ["2001:db8:1::/64"]}}`);
  }
  const out: Record<string, BridgeConfig> = {};
  for (const [bridge, value] of Object.entries(data)) {
    const at = `${where}: bridges.${printable(bridge)}`;
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/.test(bridge)) throw usageError(`${at}: not a bridge name (1 to 15 letters, digits, '.', '_' or '-')`);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw usageError(`${at} must be an object`);
    const net: BridgeConfig = { prefixes: [], ipv6Only: false };
    for (const [key, v] of Object.entries(value)) {
      if (key === 'prefixes') {
        if (!Array.isArray(v) || !v.every((p) => typeof p === 'string')) throw usageError(`${at}.prefixes must be a list of IPv6 /64 prefixes`);
        net.prefixes = v.map((p: string) => formatCidr(parsePrefix64(p, `${at}.prefixes`)));
      } else if (key === 'ipv6Only') {
        if (typeof v !== 'boolean') throw usageError(`${at}.ipv6Only must be true or false`);
        net.ipv6Only = v;
      } else {
        throw usageError(`${at}: unknown key '${printable(key)}'; allowed: prefixes, ipv6Only`);
      }
    }
    out[bridge] = net;
  }
  return out;
}

/** SLAAC addresses exist only in a /64. */
export function parsePrefix64(text: string, what: string): Cidr {
  const c = parseCidr(text, 6, what);
  if (c.len !== 64) throw usageError(`invalid ${what} '${printable(text)}': a network prefix must be a /64 (SLAAC, EUI-64)`);
  return c;
}

/** The allowed set and the addresses shown for a NIC with this MAC on this network. */
export function nicAddresses(mac: number, opts: NicGuardOptions, net: BridgeFacts): NicAddresses {
  const prefixes = net.prefixes.map((p) => parseCidr(p, 6, 'prefix'));
  const linkLocal: Cidr = { family: 6, addr: linkLocalAddress(mac), len: 128 };
  const eui64: Cidr[] = prefixes.map((p) => ({ family: 6, addr: eui64Address(p, mac), len: 128 }));
  const shown = {
    linkLocal: formatCidr(linkLocal),
    eui64: eui64.map(formatCidr),
    prefixSource: net.source,
  };
  if (!opts.filter) return { ...shown, guard: 'off', allowed: null };
  const ipv6 = minimalCover([
    IPV6_UNSPECIFIED,
    linkLocal,
    ...(opts.ip6Any ? prefixes : eui64),
    ...opts.ip6.map((t) => parseCidr(t, 6, 'ip6')),
  ]).map(formatCidr);
  const ipv4: Ipv4Rule =
    opts.ip4.length > 0 ? minimalCover(opts.ip4.map((t) => parseCidr(t, 4, 'ip4'))).map(formatCidr) : net.ipv6Only ? 'none' : 'any';
  return { ...shown, guard: 'on', allowed: { ipv6, ipv4 } };
}

/** One line for `status`: what the guard does with IPv4 on this NIC. */
export function describeIpv4(a: NicAddresses): string {
  if (!a.allowed) return 'not filtered (guard off)';
  const r = a.allowed.ipv4;
  if (r === 'any') return 'not address-filtered (no ip4= given; source MAC checked, DHCP server replies dropped)';
  if (r === 'none') return 'dropped (IPv6-only network)';
  return `${r.join(', ')} only (source and ARP sender)`;
}

function ident(iface: string): string {
  if (!GUARD_IFACE_RE.test(iface)) throw new RangeError(`interface name not allowed in the guard: ${iface}`);
  return iface;
}

const T = `bridge ${GUARD_TABLE}`;

/**
 * The shared part: sets keyed by interface, one chain of rules that look a frame's interface up in them,
 * and two base chains that send frames from guarded interfaces there. "add" is a no-op for what exists;
 * the rules are laid again in the same batch, so every batch leaves them whole.
 */
function sharedObjects(): string[] {
  const sets: [string, string][] = [
    ['guarded', 'type ifname ;'],
    ['macs', 'type ifname . ether_addr ;'],
    ['lladdr', 'typeof iifname . @th,208,48 ;'],
    ['allow6', 'type ifname . ipv6_addr ; flags interval ;'],
    ['na_targets', 'typeof iifname . @th,64,128 ; flags interval ;'],
    ['ip4_limited', 'type ifname ;'],
    ['allow4', 'type ifname . ipv4_addr ; flags interval ;'],
    ['ip4_none', 'type ifname ;'],
  ];
  const rule = (r: string) => `add rule ${T} guard ${r}`;
  return [
    `add table ${T}`,
    ...sets.map(([name, spec]) => `add set ${T} ${name} { ${spec} }`),
    `add chain ${T} guard`,
    `add chain ${T} forward { type filter hook forward priority -200 ; policy accept ; }`,
    `add chain ${T} input { type filter hook input priority -200 ; policy accept ; }`,
    `flush chain ${T} forward`,
    `flush chain ${T} input`,
    `flush chain ${T} guard`,
    `add rule ${T} forward iifname @guarded jump guard`,
    `add rule ${T} input iifname @guarded jump guard`,
    rule('iifname . ether saddr != @macs drop'),
    // VLAN-tagged and other frames would slip past the IP checks below.
    rule('ether type != { ip, arp, ip6 } drop'),
    rule('iifname . arp saddr ether != @macs drop'),
    rule('iifname @ip4_none ether type { ip, arp } drop'),
    rule('iifname @ip4_limited iifname . arp saddr ip != @allow4 drop'),
    rule('iifname @ip4_limited iifname . ip saddr != @allow4 drop'),
    // The client ports of DHCPv4 (68) and DHCPv6 (546): only a server sends to them.
    rule('meta l4proto udp udp dport { 68, 546 } drop'),
    rule('icmpv6 type { nd-router-advert, nd-redirect } drop'),
    rule('iifname . ip6 saddr != @allow6 drop'),
    // A neighbour advertisement's target follows the 8-byte ICMPv6 header; it must be one of the NIC's addresses.
    rule('icmpv6 type nd-neighbor-advert iifname . @th,64,128 != @na_targets drop'),
    // The link-layer address option right after the target (type 2 in NA, 1 in NS) must be the NIC's MAC.
    rule('icmpv6 type nd-neighbor-advert @th,192,8 2 iifname . @th,208,48 != @lladdr drop'),
    rule('icmpv6 type nd-neighbor-solicit @th,192,8 1 iifname . @th,208,48 != @lladdr drop'),
  ];
}

/** A range of 128-bit values as nft raw-payload text: one value, or first-last. */
function rawRange(c: Cidr): string {
  const host = (1n << BigInt(BITS[c.family] - c.len)) - 1n;
  const hex = (n: bigint) => `0x${n.toString(16).padStart(BITS[c.family] / 4, '0')}`;
  return host === 0n ? hex(c.addr) : `${hex(c.addr)}-${hex(c.addr | host)}`;
}

/** The elements that stand for one NIC in the shared sets, as "set { elements }" pairs. */
function nicElements(iface: string, mac: number, allowed: NonNullable<NicAddresses['allowed']>): [string, string[]][] {
  const k = `"${ident(iface)}"`;
  const v6 = allowed.ipv6.map((t) => parseCidr(t, 6, 'ip6'));
  const out: [string, string[]][] = [
    ['guarded', [k]],
    ['macs', [`${k} . ${formatMac(mac)}`]],
    ['lladdr', [`${k} . 0x${mac.toString(16).padStart(12, '0')}`]],
    ['allow6', v6.map((c) => `${k} . ${formatCidr(c)}`)],
    // No neighbour is ever advertised at the unspecified address (it is allowed as a source for DAD only);
    // a prefix that starts at :: (::/0, ::/64) is the NIC's like any other.
    ['na_targets', v6.filter((c) => !(c.addr === IPV6_UNSPECIFIED.addr && c.len === IPV6_UNSPECIFIED.len)).map((c) => `${k} . ${rawRange(c)}`)],
  ];
  const v4 = allowed.ipv4;
  if (v4 === 'none') out.push(['ip4_none', [k]]);
  else if (v4 !== 'any') {
    const list = [IPV4_UNSPECIFIED, ...v4.map((t) => parseCidr(t, 4, 'ip4'))];
    out.push(['ip4_limited', [k]], ['allow4', list.map((c) => `${k} . ${formatCidr(c)}`)]);
  }
  return out.filter(([, els]) => els.length > 0);
}

const elements = (verb: 'add' | 'delete', set: string, els: string[]) => `${verb} element ${T} ${set} { ${els.join(', ')} }`;

/**
 * The nft batch (for `nft -f -`) that guards `iface`: frames from it must carry `mac`; no router
 * advertisement, redirect or DHCP server reply; IPv6 (and, when limited, IPv4/ARP) sources within the
 * allowed set; neighbour advertisements only for its own addresses, with its own MAC.
 */
export function guardBatch(iface: string, mac: number, allowed: NonNullable<NicAddresses['allowed']>): string {
  const els = nicElements(iface, mac, allowed);
  return [...sharedObjects(), ...els.map(([set, e]) => elements('add', set, e)), ''].join('\n');
}

/**
 * The nft batch that takes `iface`'s guard away in one step. It adds what it deletes first, so it succeeds
 * whether or not the guard (or the table) is there: idempotent, and still one atomic batch.
 */
export function unguardBatch(iface: string, mac: number, allowed: NonNullable<NicAddresses['allowed']>): string {
  const els = nicElements(iface, mac, allowed);
  return [
    ...sharedObjects(),
    ...els.map(([set, e]) => elements('add', set, e)),
    // guarded first: the interface is unguarded before any of its addresses go.
    ...els.map(([set, e]) => elements('delete', set, e)),
    '',
  ].join('\n');
}

/** The per-interface sets, for removal by interface name. */
export const GUARD_SETS = ['guarded', 'macs', 'lladdr', 'allow6', 'na_targets', 'ip4_limited', 'allow4', 'ip4_none'];

type NftJson = { nftables?: { set?: { table?: string; name?: string; elem?: unknown[] } }[] };

function guardSets(nftJson: string): { name: string; elem: unknown[] }[] {
  let data: NftJson;
  try {
    data = JSON.parse(nftJson) as NftJson;
  } catch {
    return [];
  }
  const out: { name: string; elem: unknown[] }[] = [];
  for (const item of data.nftables ?? []) {
    const s = item.set;
    if (s?.table === GUARD_TABLE && typeof s.name === 'string' && GUARD_SETS.includes(s.name)) out.push({ name: s.name, elem: s.elem ?? [] });
  }
  return out;
}

/** The interface an element of a guard set belongs to: the element itself, or the first part of a concatenation. */
function elementIface(e: unknown): string | undefined {
  if (typeof e === 'string') return e;
  const concat = (e as { concat?: unknown[] } | null)?.concat;
  return Array.isArray(concat) && typeof concat[0] === 'string' ? concat[0] : undefined;
}

/** Guarded interfaces, from `nft -j list table bridge uncloud_vm`. */
export function guardedIfaces(nftJson: string): string[] {
  const ifaces = new Set<string>();
  for (const s of guardSets(nftJson)) for (const e of s.elem) {
    const i = elementIface(e);
    if (i !== undefined) ifaces.add(i);
  }
  return [...ifaces];
}

/**
 * The `nft -j -f -` batch that deletes every element of `iface` found in the listed table (the elements
 * as nft listed them), or null when it has none. One batch: the interface loses its guard at once.
 */
export function removalJson(nftJson: string, iface: string): string | null {
  const cmds = [];
  for (const s of guardSets(nftJson)) {
    const elem = s.elem.filter((e) => elementIface(e) === iface);
    if (elem.length > 0) cmds.push({ delete: { element: { family: 'bridge', table: GUARD_TABLE, name: s.name, elem } } });
  }
  return cmds.length > 0 ? JSON.stringify({ nftables: cmds }) : null;
}
