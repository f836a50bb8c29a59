/**
 * Held counts of the file store, so `mac pool` reads one file instead of counting every lease file.
 *
 * pool.json keeps, per counted prefix (hex), how many lease files lie under it, not counting the MACs in
 * `pending`; a pending MAC counts when its file exists. Every change of lease files runs under the pool lock
 * and first writes pool.json (atomically) with the MACs it is about to create or remove as `pending` and the
 * counts without them, then creates or removes the files. A kill at any instant leaves either the old record
 * (its pending MACs counted by whether their files exist) or the new one: the count is right either way, and
 * the next change folds the pending MACs into the counts. A prefix not counted yet is counted once, under
 * the lock, from the directory.
 */
import { hexOf, type FileRecords, type PoolFile } from './file-records.js';

export const prefixHex = (prefix: string): string => hexOf(prefix);
/** "420000" → "42:00:00" (pool.json counts by hex). */
export const macPrefixOfHex = (hex: string): string => hex.match(/../g)?.join(':') ?? '';

/** The counts as they are now: recorded, plus the pending MACs whose files exist. */
export function settledCounts(file: PoolFile, records: FileRecords): Record<string, number> {
  const counts = { ...file.held };
  for (const mac of file.pending ?? []) {
    if (!records.exists(mac)) continue;
    for (const p of Object.keys(counts)) if (hexOf(mac).startsWith(p)) counts[p]! += 1;
  }
  return counts;
}

/** Held under one prefix, or undefined when that prefix is not counted yet. */
export function heldUnder(file: PoolFile, records: FileRecords, prefix: string): number | undefined {
  const p = prefixHex(prefix);
  if (file.held?.[p] === undefined) return undefined;
  return settledCounts(file, records)[p];
}

/** Count a prefix from the directory (under the lock). */
export function countFromDir(records: FileRecords, prefix: string): number {
  const p = prefixHex(prefix);
  return records.leaseNames().filter((e) => e.startsWith(p)).length;
}

/**
 * The pool file to write before creating or removing the lease files of `macs` (under the lock): the counts
 * as they are now without those MACs, the MACs pending. `counted` adds prefixes to count from now on.
 */
export function beforeChange(file: PoolFile, records: FileRecords, macs: string[], counted: string[] = []): PoolFile {
  const counts = settledCounts(file, records);
  for (const prefix of counted) {
    const p = prefixHex(prefix);
    if (counts[p] === undefined) counts[p] = countFromDir(records, prefix);
  }
  for (const mac of macs) {
    if (!records.exists(mac)) continue;
    for (const p of Object.keys(counts)) if (hexOf(mac).startsWith(p)) counts[p]! -= 1;
  }
  return { version: 1, cursors: file.cursors, held: counts, pending: [...new Set(macs)] };
}
