/**
 * MAC addresses and pool arithmetic. Pure: no I/O, no clock, no randomness.
 * A MAC is held as a number (48 bits fit exactly in a double).
 */
import { UncloudError, printable, usageError } from './errors.js';

export const MAC_BITS = 48;
/** A MAC as this tool writes it: six lowercase hex octets with colons. */
export const MAC_TEXT_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const PREFIX_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){0,4}$/;

/** Parse "42:00:00:00:00:01" (also '-' separators, any case) into a number. */
export function parseMac(text: string): number {
  // As this tool writes it (every lease record), read in place: a tenth of the time of the pattern and parseInt.
  const written = writtenMacValue(text);
  if (written >= 0) return written;
  const norm = text.trim().toLowerCase().replaceAll('-', ':');
  if (!MAC_TEXT_RE.test(norm)) {
    throw usageError(`invalid MAC address '${printable(text)}': expected six hex octets like 42:00:00:00:00:01`);
  }
  return parseInt(norm.replaceAll(':', ''), 16);
}

/** The value of a MAC as MAC_TEXT_RE has it (lowercase hex octets, colons), or -1 for any other text. */
function writtenMacValue(text: string): number {
  if (text.length !== 17) return -1;
  let value = 0;
  for (let i = 0; i < 17; i += 3) {
    const hi = hexDigit(text.charCodeAt(i));
    const lo = hexDigit(text.charCodeAt(i + 1));
    if (hi < 0 || lo < 0 || (i < 15 && text.charCodeAt(i + 2) !== 0x3a)) return -1;
    value = value * 256 + hi * 16 + lo;
  }
  return value;
}

/** 0-15 for a lowercase hex digit's char code, else -1. */
function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** Format a 48-bit number as lowercase colon-separated octets. */
export function formatMac(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** MAC_BITS) {
    throw new RangeError(`not a 48-bit MAC value: ${value}`);
  }
  const hex = value.toString(16).padStart(12, '0');
  return hex.match(/../g)!.join(':');
}

export function firstOctet(mac: number): number {
  return Math.floor(mac / 2 ** 40);
}

export function isMulticast(mac: number): boolean {
  return (firstOctet(mac) & 1) === 1;
}

export function isLocallyAdministered(mac: number): boolean {
  return (firstOctet(mac) & 2) === 2;
}

/** A MAC a guest NIC may carry: unicast and not all zero. */
export function validateGuestMac(mac: number, text = formatMac(mac)): void {
  if (mac === 0) throw usageError(`invalid MAC address '${text}': the all-zero address is not usable`);
  if (isMulticast(mac)) {
    throw usageError(`invalid MAC address '${text}': multicast (lowest bit of the first octet set); a NIC needs a unicast address`);
  }
}

/** The first octet of every tap's host-side MAC (libvirt's range): never a pool's. */
const TAP_FIRST_OCTET = 0xfe;

/** The host side of a tap: first octet fe so the bridge never adopts the guest's MAC (as libvirt does). */
export function tapMacFor(guestMac: number): number {
  return TAP_FIRST_OCTET * 2 ** 40 + (guestMac % 2 ** 40);
}

export interface Pool {
  /** Canonical prefix text, e.g. "42:00:00". */
  readonly prefix: string;
  /** Number of octets in the prefix, 1..5. */
  readonly octets: number;
  /** The prefix shifted into place: the pool's first MAC. */
  readonly base: number;
  /** Number of addresses in the pool: 2^(8 * (6 - octets)). */
  readonly size: number;
}

export interface PrefixOptions {
  /** Accept a prefix that is multicast or not locally administered. */
  force?: boolean;
}

/**
 * Parse and validate a pool prefix (1 to 5 octets).
 * Refused: a multicast first octet (no usable address at all, forced or not), a globally administered first
 * octet (unless forced),
 * QEMU's own 52:54:00 range, and fe (the host-side tap range).
 */
export function parsePool(text: string, opts: PrefixOptions = {}): Pool {
  const norm = text.trim().toLowerCase().replaceAll('-', ':');
  if (!PREFIX_RE.test(norm)) {
    throw usageError(`invalid MAC prefix '${printable(text)}': expected 1 to 5 hex octets like 42:00:00`);
  }
  const parts = norm.split(':');
  const octets = parts.length;
  const suffixBits = 8 * (6 - octets);
  // The pool's first MAC carries the prefix's first octet: its bits are every address's in the pool.
  const base = parseInt(parts.join(''), 16) * 2 ** suffixBits;
  if (firstOctet(base) === TAP_FIRST_OCTET) {
    throw usageError(`invalid MAC prefix '${norm}': fe is reserved for the host side of taps`);
  }
  if (norm === '52:54:00' || norm.startsWith('52:54:00:')) {
    throw usageError(`invalid MAC prefix '${norm}': 52:54:00 is QEMU's own default range; pick a locally administered prefix such as 42:00:00`);
  }
  if (isMulticast(base)) {
    // Every address under a multicast first octet is multicast: not one could be a NIC's, forced or not.
    throw usageError(`invalid MAC prefix '${norm}': first octet is multicast (lowest bit set), so no address in it can be a NIC's (even with --force-prefix); use e.g. 42:00:00`);
  }
  if (!opts.force && !isLocallyAdministered(base)) {
    throw usageError(`invalid MAC prefix '${norm}': first octet is not locally administered (bit 1 clear); use e.g. 42:00:00, or --force-prefix`);
  }
  return { prefix: norm, octets, base, size: 2 ** suffixBits };
}

export function inPool(pool: Pool, mac: number): boolean {
  return mac >= pool.base && mac < pool.base + pool.size;
}

/** Index (0..size-1) of a MAC inside its pool. */
export function indexOf(pool: Pool, mac: number): number {
  if (!inPool(pool, mac)) throw usageError(`MAC ${formatMac(mac)} is outside the pool ${describePool(pool)}`);
  return mac - pool.base;
}

export function macAt(pool: Pool, index: number): number {
  return pool.base + (((index % pool.size) + pool.size) % pool.size);
}

/** A MAC the pool must track has to lie inside it. `what` names the value in the error. */
export function checkInPool(pool: Pool, mac: string, what = `MAC ${mac}`): void {
  if (!inPool(pool, parseMac(mac))) {
    throw usageError(`${what} is outside the pool ${pool.prefix}; pick one that starts with ${pool.prefix}`);
  }
}

/** Whether an index is a usable guest address: not the all-zero MAC, not multicast (a forced prefix can be). */
export function usable(pool: Pool, index: number): boolean {
  const mac = pool.base + index;
  return mac !== 0 && !isMulticast(mac);
}

/** How many addresses of the pool a NIC may carry: all but the all-zero address, none under a multicast prefix. */
export function usableCount(pool: Pool): number {
  if (isMulticast(pool.base)) return 0;
  return pool.base === 0 ? pool.size - 1 : pool.size;
}

/**
 * Where a scan goes on from index i: i itself when it is free, else an index past i, at best the end of the
 * held run that i starts (pool.size when the run reaches the end). A store that knows its held runs answers in
 * O(log n), so a long held run costs one probe, not one per address.
 */
export type FreeFrom = (index: number) => number;

/** The FreeFrom of a plain "is it held?" predicate: one probe per held address. */
export function freeFromPredicate(taken: (index: number) => boolean): FreeFrom {
  return (i) => (taken(i) ? i + 1 : i);
}

/** Index of the first element >= value in a sorted array. */
function lowerBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The FreeFrom of held indices sorted ascending and distinct: the end of a held run by binary search,
 * O(log n) however long the run (in a run, held[k + m] - held[k] === m).
 */
export function freeFromSorted(held: readonly number[]): FreeFrom {
  return (i) => {
    const k = lowerBound(held, i);
    if (k === held.length || held[k] !== i) return i;
    let lo = k;
    let hi = held.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (held[mid]! - i === mid - k) lo = mid;
      else hi = mid - 1;
    }
    return held[lo]! + 1;
  };
}

/**
 * The next free usable index from the cursor to the end, then from the start back to the cursor, or null
 * when every usable address is held. The walk takes one probe per held run met (see FreeFrom) and never
 * more than the pool's usable addresses; a pool with none answers at once.
 */
export function nextFree(pool: Pool, cursor: number, freeFrom: FreeFrom): number | null {
  if (usableCount(pool) === 0) return null;
  const start = ((cursor % pool.size) + pool.size) % pool.size;
  for (const [lo, hi] of [[start, pool.size], [0, start]] as const) {
    let i = lo;
    while (i < hi) {
      if (!usable(pool, i)) {
        i += 1;
        continue;
      }
      const next = freeFrom(i);
      if (next === i) return i;
      i = Math.max(next, i + 1);
    }
  }
  return null;
}

/** The cursor after handing out `index`. */
export function advance(pool: Pool, index: number): number {
  return (index + 1) % pool.size;
}

export function describePool(pool: Pool): string {
  return `${pool.prefix} (${pool.size.toLocaleString('en-US')} addresses)`;
}

export function exhaustedError(pool: Pool): UncloudError {
  return new UncloudError(
    'POOL_EXHAUSTED',
    `MAC pool ${describePool(pool)} is exhausted: every address is held; free some with 'uncloud-vm gc' or 'uncloud-vm mac release <mac>', or configure a larger prefix`,
  );
}
