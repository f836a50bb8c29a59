/**
 * The NIC guard: the nftables batch that enforces a NIC's allowed set (core/nic-allowed.ts). One table for
 * every guarded NIC on a host: two base chains send frames from a guarded interface (one set lookup) to one
 * chain whose rules look the interface up in sets keyed by it (its MAC, its allowed addresses), so a packet costs the same however many NICs are guarded, and the ruleset does not
 * grow with them. A NIC is its elements in those sets: added, and removed, in one nft batch.
 * (Incus lays one base chain per device; each packet would then walk every device's chain.)
 *
 * Pure. Every value in the batch is re-printed from a parsed number (MACs, addresses) or checked against
 * GUARD_IFACE_RE (interface names), so nothing a user typed is ever parsed by nft as syntax.
 */
import { BITS, type Cidr, formatCidr, parseCidr } from './ip.js';
import { formatMac } from './mac.js';
import { IPV4_UNSPECIFIED, IPV6_UNSPECIFIED, type NicAddresses } from './nic-allowed.js';

export const GUARD_TABLE = 'uncloud_vm';
/** Interface names the guard accepts: they are written into the batch as quoted set keys. */
export const GUARD_IFACE_RE = /^[A-Za-z0-9_]{1,15}$/;

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
