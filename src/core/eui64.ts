/**
 * Modified EUI-64 interface identifiers (RFC 4291 appendix A): what a guest's SLAAC derives from its MAC.
 * Because the MAC comes from our pool, a VM's IPv6 addresses are known before it boots.
 */
import type { Cidr } from './ip.js';

const LINK_LOCAL = 0xfe80n << 112n;

/** The 64-bit interface identifier: ff:fe in the middle, the universal/local bit flipped. */
export function eui64InterfaceId(mac: number): bigint {
  const m = BigInt(mac);
  const upper = (m >> 24n) ^ 0x020000n;
  const lower = m & 0xffffffn;
  return (upper << 40n) | (0xfffen << 24n) | lower;
}

/** fe80::<interface id>. */
export function linkLocalAddress(mac: number): bigint {
  return LINK_LOCAL | eui64InterfaceId(mac);
}

/** The SLAAC address of a MAC in a /64. */
export function eui64Address(prefix: Cidr, mac: number): bigint {
  if (prefix.family !== 6 || prefix.len !== 64) throw new RangeError('EUI-64 addresses need an IPv6 /64');
  return prefix.addr | eui64InterfaceId(mac);
}
