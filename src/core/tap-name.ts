/**
 * Deterministic host tap names: "uc" + the first 10 hex digits of the VM's UUID + "n" + NIC index.
 * At most 14 characters, inside Linux's 15-character interface name limit.
 */
export const MAX_NICS = 8;

/** What tapName returns; how cleanup tells our taps (and their rules) from anything else on the host. */
export const TAP_RE = /^uc[0-9a-f]{10}n[0-7]$/;

export function tapName(uuid: string, index: number): string {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_NICS) {
    throw new RangeError(`NIC index out of range: ${index}`);
  }
  const hex = uuid.replaceAll('-', '').toLowerCase().slice(0, 10);
  return `uc${hex}n${index}`;
}
