/**
 * Deterministic host tap names: "uc" + 10 hex digits + "n" + NIC index, at most 14 characters, inside
 * Linux's 15-character interface name limit. The hex digits are the UUID's first ten; when a running VM
 * already uses that name (two UUIDs that share their first ten digits), a hash of the UUID and the attempt.
 */
import { createHash } from 'node:crypto';

export const MAX_NICS = 8;

/** What tapName returns; how cleanup tells our taps (and their rules) from anything else on the host. */
export const TAP_RE = /^uc[0-9a-f]{10}n[0-7]$/;

export function tapName(uuid: string, index: number, attempt = 0): string {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_NICS) {
    throw new RangeError(`NIC index out of range: ${index}`);
  }
  const hex =
    attempt === 0
      ? uuid.replaceAll('-', '').toLowerCase().slice(0, 10)
      : createHash('sha256').update(`${uuid.toLowerCase()}/${attempt}`).digest('hex').slice(0, 10);
  return `uc${hex}n${index}`;
}

/** Tap names for a VM's NICs that none of `inUse` has: the same attempt for every NIC, so they stay alike. */
export function freeTapNames(uuid: string, indices: number[], inUse: (tap: string) => boolean): string[] {
  for (let attempt = 0; ; attempt++) {
    const names = indices.map((i) => tapName(uuid, i, attempt));
    if (!names.some(inUse)) return names;
  }
}
