/**
 * Which addresses a NIC may send from (its allowed set) and the addresses shown for it: from its MAC, its
 * --nic guard options and its bridge's network. Pure; core/nic-guard-rules.ts turns the set into nft batches.
 */
import { eui64Address, linkLocalAddress } from './eui64.js';
import { printable, usageError } from './errors.js';
import { type Cidr, formatCidr, minimalCover, parseCidr } from './ip.js';
import { BRIDGE_RE } from './nic-request.js';

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

/** Allowed as a source (duplicate address detection), never as an advertised target. */
export const IPV6_UNSPECIFIED: Cidr = { family: 6, addr: 0n, len: 128 };
/** Allowed as a source (DHCP discovery, ARP probes) wherever IPv4 is limited. */
export const IPV4_UNSPECIFIED: Cidr = { family: 4, addr: 0n, len: 32 };

/** The config file's "bridges": { "<bridge>": { "prefixes": ["2001:db8:1::/64"], "ipv6Only": true } }. */
export function parseBridges(data: unknown, where: string): Record<string, BridgeConfig> {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw usageError(`${where}: 'bridges' must be an object of bridge names, e.g. {"br0": {"prefixes": ["2001:db8:1::/64"]}}`);
  }
  const out: Record<string, BridgeConfig> = {};
  for (const [bridge, value] of Object.entries(data)) {
    const at = `${where}: bridges.${printable(bridge)}`;
    if (!BRIDGE_RE.test(bridge)) throw usageError(`${at}: not a bridge name (1 to 15 letters, digits, '.', '_' or '-')`);
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
