/** One --nic as the user typed it → a NIC request of the plan (bridge or network, MAC, guard options), and back. */
import { printable, usageError } from './errors.js';
import { formatCidr, parseCidr } from './ip.js';
import { formatMac, parseMac, validateGuestMac } from './mac.js';
import { networkDevices, parseNetworkId } from './network.js';
import type { NicGuardOptions } from './nic-allowed.js';

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

/** A Linux interface name: what --nic bridge= and the config's bridges accept. */
export const BRIDGE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

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
