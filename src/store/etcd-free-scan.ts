/** Finding free addresses in the etcd store: the shared cursor, and a scan of held keys from it in batches. */
import { UncloudError } from '../core/errors.js';
import { advance, exhaustedError, formatMac, indexOf, macAt, parseMac, type Pool, usable, usableCount } from '../core/mac.js';
import { type EtcdConn, macHex } from './etcd-client.js';
import { FIRST_CURSOR } from './policy.js';

const SCAN_BATCH = 256;

/** The cursor's index; a new pool starts at suffix 1, as in the file store. */
export async function readCursor(c: EtcdConn, pool: Pool): Promise<number> {
  const text = await c.call('reading the cursor', () => c.client.get(c.cursorKey(pool)).string());
  if (text === null) return FIRST_CURSOR;
  try {
    return indexOf(pool, parseMac(text));
  } catch {
    throw new UncloudError('STATE_DAMAGED', `${c.where}: cursor key ${c.cursorKey(pool)} is damaged ('${text.slice(0, 40)}'); repair or delete it`);
  }
}

/** Up to `want` free indices from the cursor (wrapping), reading held keys in batches, not one by one. */
export async function freeIndices(c: EtcdConn, pool: Pool, cursor: number, also: Set<string>, want: number): Promise<number[]> {
  const out: number[] = [];
  if (usableCount(pool) === 0) return out;
  // Addresses under a conflict record count as held (rare: usually an empty range).
  const conflicted = new Set(
    (await c.call('scan', () => c.client.getAll().prefix(`${c.prefix}/conflicts/`).keys())).map((k) => k.slice(k.lastIndexOf('/') + 1)),
  );
  const held = async (from: number, to: number): Promise<Set<string>> => {
    const start = c.macKey(formatMac(macAt(pool, from)));
    const end = to >= pool.size ? `${c.prefix}/macs/${macHex(formatMac(pool.base + pool.size - 1))}\u0000` : c.macKey(formatMac(macAt(pool, to)));
    const keys = await c.call('scan', () => c.client.getAll().inRange({ start, end }).keys());
    return new Set(keys.map((k) => k.slice(k.lastIndexOf('/') + 1)));
  };
  let scanned = 0;
  let from = cursor;
  while (scanned < pool.size) {
    const to = Math.min(from + SCAN_BATCH, pool.size);
    const taken = await held(from, to);
    for (let i = from; i < to; i++) {
      if (!usable(pool, i)) continue;
      const mac = formatMac(macAt(pool, i));
      const hex = macHex(mac);
      if (!taken.has(hex) && !conflicted.has(hex) && !also.has(mac)) {
        out.push(i);
        if (out.length >= want) return out;
      }
    }
    scanned += to - from;
    from = to >= pool.size ? 0 : to;
  }
  return out;
}

/** The addresses the next allocation would give, without claiming anything. */
export async function peekFree(c: EtcdConn, pool: Pool, count: number): Promise<string[]> {
  let cursor = await readCursor(c, pool);
  const out: string[] = [];
  while (out.length < count) {
    const i = (await freeIndices(c, pool, cursor, new Set(out), 1))[0];
    if (i === undefined) throw exhaustedError(pool);
    out.push(formatMac(macAt(pool, i)));
    cursor = advance(pool, i);
  }
  return out;
}
