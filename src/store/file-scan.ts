/**
 * The file store's choice of addresses for an allocation (and for peek): next free from the cursor, skipping
 * what is held, what this allocation already chose and what stands under a conflict record. Bounded: one
 * lstat per address while held runs are short; once a run passes LONG_RUN the held addresses are read from the
 * lease directory once and every run after that is skipped by binary search, so a cursor inside a long held run
 * costs one directory read, not one lstat per address.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { advance, type FreeFrom, formatMac, freeFromSorted, inPool, macAt, nextFree, parseMac, type Pool } from '../core/mac.js';
import { type FileRecords, hexOf } from './file-records.js';
import { Exhausted, heldError } from './policy.js';

/** Held addresses in a row, probed one by one, before a scan reads the lease directory to skip the run. */
const LONG_RUN = 64;

export interface Wanted {
  /** Exactly this MAC (held: an error naming the holder). */
  mac?: string;
  /** This MAC when it is free, else the next free one. */
  prefer?: string;
}

export interface Choice {
  macs: string[];
  /** The cursor after the addresses taken from it. */
  cursor: number;
}

/** One address per wanted entry, claiming nothing. Throws Exhausted when the pool has too few free. */
export function chooseAddresses(r: FileRecords, pool: Pool, cursor: number, wanted: Wanted[]): Choice {
  const macs: string[] = [];
  const chosen = new Set<number>();
  const conflicted = (mac: string) => existsSync(join(r.conflictDir, `${hexOf(mac)}.json`));
  const held = heldFrom(r, pool);
  const freeFrom: FreeFrom = (i) => {
    const next = held(i);
    if (next !== i) return next;
    return chosen.has(i) || conflicted(formatMac(macAt(pool, i))) ? i + 1 : i;
  };
  for (const w of wanted) {
    if (w.mac !== undefined) {
      if (r.exists(w.mac) || macs.includes(w.mac)) throw heldError(w.mac, r.readLeaseQuietly(r.leasePath(w.mac)));
      macs.push(w.mac);
      continue;
    }
    if (w.prefer !== undefined && inPool(pool, parseMac(w.prefer)) && !macs.includes(w.prefer) && !r.exists(w.prefer) && !conflicted(w.prefer)) {
      macs.push(w.prefer);
      continue;
    }
    const index = nextFree(pool, cursor, freeFrom);
    if (index === null) throw new Exhausted();
    chosen.add(index);
    macs.push(formatMac(macAt(pool, index)));
    cursor = advance(pool, index);
  }
  return { macs, cursor };
}

/** Where a scan goes on from index i past held addresses (see FreeFrom). */
function heldFrom(r: FileRecords, pool: Pool): FreeFrom {
  const prefixHex = hexOf(pool.prefix);
  let run = 0;
  let sorted: FreeFrom | undefined;
  return (i) => {
    if (sorted) {
      const next = sorted(i);
      if (next !== i) return next;
    } else if (run >= LONG_RUN) {
      const held = r
        .leaseNames()
        .filter((e) => e.startsWith(prefixHex))
        .map((e) => parseInt(e.slice(0, 12), 16) - pool.base)
        .sort((a, b) => a - b);
      sorted = freeFromSorted(held);
      const next = sorted(i);
      if (next !== i) return next;
    }
    // Addresses claimed after the directory was read are still found by lstat.
    if (r.exists(formatMac(macAt(pool, i)))) {
      run += 1;
      return i + 1;
    }
    run = 0;
    return i;
  };
}
