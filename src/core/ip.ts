/**
 * IPv4/IPv6 addresses and prefixes: parsed to numbers, printed canonically (RFC 5952 for IPv6).
 * What reaches nft or the user is always re-printed from the number, never the text the user typed.
 */
import { printable, usageError } from './errors.js';

export type Family = 4 | 6;

/** An address (len = 32 or 128) or a network prefix (host bits zero). */
export interface Cidr {
  family: Family;
  addr: bigint;
  len: number;
}

export const BITS: Record<Family, number> = { 4: 32, 6: 128 };

export function parseIpv4(text: string): bigint | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let n = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return null;
    n = (n << 8n) | BigInt(p);
  }
  return n;
}

export function parseIpv6(text: string): bigint | null {
  if (!/^[0-9a-fA-F:]{2,39}$/.test(text)) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (s: string): string[] | null => {
    if (s === '') return [];
    const g = s.split(':');
    return g.every((x) => /^[0-9a-fA-F]{1,4}$/.test(x)) ? g : null;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  let n = 0n;
  for (const g of [...head, ...Array<string>(missing).fill('0'), ...tail]) n = (n << 16n) | BigInt(`0x${g}`);
  return n;
}

export function formatIpv4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 0xffn)).join('.');
}

/** RFC 5952: lower case, no leading zeros, the longest run (≥ 2) of zero groups as '::', the first one on a tie. */
export function formatIpv6(n: bigint): string {
  const g: number[] = [];
  for (let i = 7; i >= 0; i--) g.push(Number((n >> BigInt(i * 16)) & 0xffffn));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

export function formatAddr(family: Family, n: bigint): string {
  return family === 4 ? formatIpv4(n) : formatIpv6(n);
}

/** "addr" for a single address, "addr/len" for a prefix. */
export function formatCidr(c: Cidr): string {
  const a = formatAddr(c.family, c.addr);
  return c.len === BITS[c.family] ? a : `${a}/${c.len}`;
}

function mask(family: Family, len: number): bigint {
  const bits = BigInt(BITS[family]);
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(len))) - 1n);
}

/**
 * An address or a network prefix of the given family; `what` names the value in the error
 * ("--nic ip6=…"). A prefix with host bits set is refused: it is either an address or a network.
 */
export function parseCidr(text: string, family: Family, what: string): Cidr {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const addr = family === 4 ? parseIpv4(addrText) : parseIpv6(addrText);
  const example = family === 4 ? '192.0.2.7 or 192.0.2.0/24' : '2001:db8::7 or 2001:db8:1::/64';
  if (addr === null) throw usageError(`invalid ${what} '${printable(text)}': expected an IPv${family} address or prefix, e.g. ${example}`);
  let len = BITS[family];
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > BITS[family]) {
      throw usageError(`invalid ${what} '${printable(text)}': the prefix length must be 0 to ${BITS[family]}`);
    }
    len = Number(lenText);
  }
  const net = addr & mask(family, len);
  if (net !== addr) {
    const c = { family, addr: net, len };
    throw usageError(
      `invalid ${what} '${printable(text)}': host bits are set; give the network ${formatCidr(c)} or the address ${formatAddr(family, addr)}`,
    );
  }
  return { family, addr, len };
}

/** Whether `inner` lies within `outer` (same family). */
export function contains(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.len <= inner.len && (inner.addr & mask(outer.family, outer.len)) === outer.addr;
}

/** Sorted, without entries that another entry covers (nft interval sets refuse overlaps). */
export function minimalCover(list: Cidr[]): Cidr[] {
  const out = list.filter((c, i) => !list.some((o, j) => j !== i && contains(o, c) && (o.len < c.len || j < i)));
  return out.sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : a.len - b.len));
}
