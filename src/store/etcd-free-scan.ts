/**
 * Finding free addresses in the etcd store: the shared cursor, and reads of which address keys are held in a
 * run of the pool (keys only, one range per run, the conflict records in the same round trip).
 */
import type { Etcd3, IRequestOp } from 'etcd3';
import { UncloudError } from '../core/errors.js';
import { exhaustedError, formatMac, indexOf, macAt, parseMac, type Pool, usable, usableCount } from '../core/mac.js';
import { type EtcdConn, macHex, prefixEnd } from './etcd-client.js';
import { FIRST_CURSOR } from './policy.js';

/** Addresses one read examines: one keys-only range, at most this many keys in the reply. */
export const SCAN_BATCH = 256;

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

/** The run of the pool one read covers: [from, to), never past the pool's end. */
export function runFrom(pool: Pool, from: number): { from: number; to: number } {
  return { from, to: Math.min(from + SCAN_BATCH, pool.size) };
}

/** The etcd key range of the addresses [from, to) of a pool. */
function keyRange(c: EtcdConn, pool: Pool, from: number, to: number): { key: Buffer; range_end: Buffer } {
  const start = c.macKey(formatMac(macAt(pool, from)));
  // The range's end is the first key after it; at the pool's end, the first key after its last address.
  const end = to >= pool.size ? `${c.macKey(formatMac(macAt(pool, pool.size - 1)))}\u0000` : c.macKey(formatMac(macAt(pool, to)));
  return { key: Buffer.from(start), range_end: Buffer.from(end) };
}

/** A keys-only range over the address keys of a run, as a transaction operation. */
export function heldKeysOp(c: EtcdConn, pool: Pool, run: { from: number; to: number }): IRequestOp {
  return { request_range: { ...keyRange(c, pool, run.from, run.to), keys_only: true } };
}

/** A keys-only range over every conflict record (usually none), as a transaction operation. */
export function conflictKeysOp(c: EtcdConn): IRequestOp {
  const prefix = `${c.prefix}/conflicts/`;
  return { request_range: { key: Buffer.from(prefix), range_end: Buffer.from(prefixEnd(prefix)), keys_only: true } };
}

/** The 12 hex digits at the end of each key of a range reply. */
export function hexOfKeys(kvs: { key: Buffer }[]): Set<string> {
  return new Set(kvs.map((kv) => kv.key.toString().slice(-12)));
}

/** What one read of a run says: the free indices in it (in order) and the store's revision it shows. */
export interface RunView {
  free: number[];
  next: number;
  revision: bigint;
}

/** The free indices of a run, given its held keys and the conflict records (which count as held). */
export function freeInRun(pool: Pool, run: { from: number; to: number }, held: Set<string>, conflicted: Set<string>): number[] {
  const out: number[] = [];
  for (let i = run.from; i < run.to; i++) {
    if (!usable(pool, i)) continue;
    const hex = macHex(formatMac(macAt(pool, i)));
    if (!held.has(hex) && !conflicted.has(hex)) out.push(i);
  }
  return out;
}

/** Read one run from `from`: its held keys and the conflict records in one round trip (a transaction of reads). */
export async function readRun(c: EtcdConn, pool: Pool, from: number): Promise<RunView> {
  const run = runFrom(pool, from);
  const res = await c.call('scan', () => alwaysTxn(c.client, c.hostKey()).then(heldKeysOp(c, pool, run), conflictKeysOp(c)).commit());
  const [held, conflicts] = res.responses.map((r) => hexOfKeys(r.response_range.kvs));
  return { free: freeInRun(pool, run, held!, conflicts!), next: run.to >= pool.size ? 0 : run.to, revision: BigInt(res.header.revision) };
}

/** A transaction whose compare always holds (no key has create revision -1): a batch of reads in one round trip. */
export function alwaysTxn(client: Etcd3, anyKey: string) {
  return client.if(anyKey, 'Create', '!=', -1);
}

/**
 * Where the first run from `from` that is not wholly held starts (pool.size: none up to the pool's end), in
 * O(log n) count-only reads however long the held stretch: counts over spans that double while they are full,
 * then halving the first span that is not.
 */
export async function skipHeld(c: EtcdConn, pool: Pool, from: number): Promise<number> {
  const full = async (s: number, e: number): Promise<boolean> => {
    const res = await c.call('scan', () => c.client.kv.range({ ...keyRange(c, pool, s, e), count_only: true }));
    // In a pool with any usable address, only its very first one can be unusable (address 0 of a 00:… prefix).
    return Number(res.count) >= e - s - (usable(pool, s) ? 0 : 1);
  };
  let pos = from;
  let span = SCAN_BATCH;
  let end: number;
  for (;;) {
    end = Math.min(pos + span, pool.size);
    if (!(await full(pos, end))) break;
    pos = end;
    if (pos >= pool.size) return pool.size;
    span *= 2;
  }
  while (end - pos > SCAN_BATCH) {
    const mid = pos + Math.floor((end - pos) / 2);
    if (await full(pos, mid)) pos = mid;
    else end = mid;
  }
  return pos;
}

/** The addresses the next allocation would give, without claiming anything. */
export async function peekFree(c: EtcdConn, pool: Pool, count: number): Promise<string[]> {
  const out: string[] = [];
  if (usableCount(pool) === 0) throw exhaustedError(pool);
  let from = await readCursor(c, pool);
  let scanned = 0;
  for (let fullRuns = 0; out.length < count; ) {
    if (scanned >= pool.size) throw exhaustedError(pool);
    if (fullRuns > 0) {
      const to = await skipHeld(c, pool, from);
      scanned += to - from;
      from = to >= pool.size ? 0 : to;
      if (scanned >= pool.size) throw exhaustedError(pool);
    }
    const view = await readRun(c, pool, from);
    for (const i of view.free) if (out.length < count) out.push(formatMac(macAt(pool, i)));
    fullRuns = view.free.length === 0 ? fullRuns + 1 : 0;
    scanned += (view.next === 0 ? pool.size : view.next) - from;
    from = view.next;
  }
  return out;
}
