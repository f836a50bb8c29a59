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

/** Hex of 0-255: without leading zero, and as two digits. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16));
const HEX2 = HEX.map((h) => h.padStart(2, '0'));
/** A 16-bit group of two octets, as IPv6 text prints it (no leading zeros). */
const group = (hi: number, lo: number): string => (hi === 0 ? HEX[lo]! : HEX[hi]! + HEX2[lo]!);

/**
 * formatIpv6(linkLocalAddress(mac)) without bigints or number formatting (`mac list` prints one per lease):
 * fe80::, then groups 4-7 of which only group 4 can be zero, and then it joins the run of zeros after fe80
 * (RFC 5952).
 */
export function linkLocalText(mac: number): string {
  const upper = Math.floor(mac / 0x1000000);
  const lower = mac % 0x1000000;
  const g4 = group((upper >>> 16) ^ 0x02, (upper >>> 8) & 0xff);
  const rest = `${group(upper & 0xff, 0xff)}:fe${HEX2[lower >>> 16]!}:${group((lower >>> 8) & 0xff, lower & 0xff)}`;
  return g4 === '0' ? `fe80::${rest}` : `fe80::${g4}:${rest}`;
}

/** The SLAAC address of a MAC in a /64. */
export function eui64Address(prefix: Cidr, mac: number): bigint {
  if (prefix.family !== 6 || prefix.len !== 64) throw new RangeError('EUI-64 addresses need an IPv6 /64');
  return prefix.addr | eui64InterfaceId(mac);
}
