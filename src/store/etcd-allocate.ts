/**
 * Allocation in the etcd store: one transaction per attempt. Its compare is the claim (every chosen address
 * key absent, and no conflict record on it); it writes the leases and the shared cursor; when it fails, the
 * same round trip reads what the next attempt needs (which chosen keys are held, and a fresh run of the pool).
 * Allocations of one process made side by side share their transactions: claims made while two are out wait
 * and go together in the next (up to 56 addresses), each with its own answer. Plain create-if-absent pays a
 * round trip and a write of etcd's log per key; many allocations pay one between them, which is what keeps
 * the store's extra writes (host index, count, cursor) from costing throughput under load.
 *
 * Which addresses an allocation aims at:
 * - Uncontended, the next free ones after the cursor, in order, as the file store gives them. A process reads
 *   the held keys of a run of the pool at a time (one keys-only range) and hands the free addresses of it to its
 *   allocations one each, so allocations running side by side in one process never aim at the same address.
 * - After a race lost to another process, the next attempt takes the next free address after the one lost; after
 *   a second race lost in a row, it starts at a random point ahead (Neutron picks at random in a window of free
 *   addresses; like a Calico block, the run from that point is then this process's to take in order): racing
 *   processes spread out instead of all aiming at the next free address. The window doubles with each race
 *   lost in a row. Nothing is reserved in etcd, so nothing is left behind by a process
 *   that dies, and every free address stays reachable: a scan that comes round the whole pool finds it.
 */
import { UncloudError } from '../core/errors.js';
import { advance, formatMac, inPool, macAt, parseMac, type Pool, usableCount } from '../core/mac.js';
import type { IRequestOp } from 'etcd3';
import type { EtcdConn } from './etcd-client.js';
import { CountDelta } from './etcd-held-count.js';
import { conflictKeysOp, freeInRun, heldKeysOp, hexOfKeys, readCursor, readRun, runFrom, type RunView, skipHeld } from './etcd-free-scan.js';
import { parseLease, serializeLease } from './lease.js';
import { Exhausted, heldError, newLease } from './policy.js';
import type { Lease, LeaseRequest } from './store.js';

/** Addresses per transaction: two compares and two puts each, the cursor and the count puts (up to 5 per etcd lease) under etcd's 128 operations. */
const TXN_CHUNK = 56;
/** etcd's limit on the operations of one list of a transaction (--max-txn-ops). */
const MAX_TXN_OPS = 128;
/**
 * Claim transactions of one pool this process has out at once; claims made meanwhile wait and go together in
 * the next. Two: one is built and sent while the other's round trip runs.
 */
const CLAIMS_IN_FLIGHT = 2;
const MAX_ATTEMPTS = 1000;
/** How long free addresses read ahead are trusted: after that, reading starts again at the shared cursor. */
const FREE_AHEAD_MS = 2000;
/** How far ahead a process that lost two races in a row starts again, at random (doubling per further race lost, up to JUMP_MAX). */
const JUMP = 4096;
const JUMP_MAX = 65536;
/** How long this process remembers an address it took: a read at an older revision still shows it free. */
const TOOK_MEMORY_MS = 15_000;

/** This process's view of free addresses in one pool. */
interface Ahead {
  /** Free indices in reading order, not yet handed to an allocation here. */
  free: number[];
  /** Where the next read starts; undefined: at the shared cursor. */
  next: number | undefined;
  /** Addresses read since this view started: a whole pool without a free one is exhaustion. */
  scanned: number;
  /** Runs in a row read without a free address. */
  fullRuns: number;
  /** The oldest revision the free list comes from. */
  revision: bigint;
  /** When this view last read etcd: the free addresses it holds are that old. */
  readAt: number;
  reading?: Promise<void> | undefined;
}

type Chosen = { mac: string; kind: 'mac' | 'prefer' | 'free'; index?: number };

export class EtcdAllocator {
  private readonly ahead = new Map<string, Ahead>();
  /** Addresses allocations of this process are claiming right now. */
  private readonly inFlight = new Set<string>();
  /** Addresses this process took: the revision that took them, and when. */
  private readonly took = new Map<string, { revision: bigint; at: number }>();
  /** Claims waiting for a transaction, per pool. */
  private readonly claims = new Map<string, ClaimQueue>();

  constructor(
    private readonly c: EtcdConn,
    /** Gives back what an earlier chunk took when a later one fails. */
    private readonly release: (mac: string) => Promise<boolean>,
  ) {}

  /** An address this process freed: no longer its own. */
  forget(mac: string): void {
    this.took.delete(mac);
  }

  /**
   * Claim one address per request, all or none; Exhausted when none is free. etcd caps a transaction at 128
   * operations: a request for more addresses than fit in one goes in chunks, and what earlier chunks took is
   * given back if a later one fails.
   */
  async allocate(pool: Pool, requests: LeaseRequest[], leaseId: string | undefined): Promise<Lease[]> {
    const taken: Lease[] = [];
    try {
      for (let i = 0; i < requests.length; i += TXN_CHUNK) {
        taken.push(...(await this.allocateOnce(pool, requests.slice(i, i + TXN_CHUNK), leaseId)));
      }
      return taken;
    } catch (err) {
      for (const l of taken) await this.release(l.mac).catch(() => false);
      throw err;
    }
  }

  private async allocateOnce(pool: Pool, requests: LeaseRequest[], leaseId: string | undefined): Promise<Lease[]> {
    let races = 0;
    const preferHeld = new Set<string>();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const chosen: Chosen[] = [];
      const mine = () => chosen.filter((x) => x.kind !== 'mac').length;
      let again = false;
      try {
        for (const req of requests) {
          if (req.mac !== undefined) {
            chosen.push({ mac: req.mac, kind: 'mac' });
            continue;
          }
          const p = req.prefer;
          if (p !== undefined && inPool(pool, parseMac(p)) && !preferHeld.has(p) && !this.inFlight.has(p) && !chosen.some((x) => x.mac === p)) {
            this.inFlight.add(p);
            chosen.push({ mac: p, kind: 'prefer' });
            continue;
          }
          const index = await this.pick(pool, mine());
          if (index === null) {
            again = true; // every address looked held, but claims of this process are in flight: look again
            break;
          }
          const mac = formatMac(macAt(pool, index));
          this.inFlight.add(mac);
          chosen.push({ mac, kind: 'free', index });
        }
        if (!again) {
          const outcome = await this.claim(pool, requests, chosen, leaseId, races);
          if (Array.isArray(outcome)) return outcome;
          races = this.learn(pool, chosen, outcome, preferHeld, races);
        }
      } finally {
        for (const x of chosen) if (x.kind !== 'mac') this.inFlight.delete(x.mac);
      }
      if (again || races > 0) await new Promise((r) => setTimeout(r, Math.random() * Math.min(10, 2 ** Math.min(races, 4))));
    }
    throw new UncloudError('ETCD_CONTENTION', `${this.c.where}: allocation lost ${MAX_ATTEMPTS} races in a row; try again`);
  }

  /**
   * The next free index for an allocation of this process, in order from this view; null when the whole pool
   * was read without one while other claims of this process (besides `own` of this allocation) are in flight.
   */
  private async pick(pool: Pool, own: number): Promise<number | null> {
    if (usableCount(pool) === 0) throw new Exhausted(); // e.g. a forced multicast prefix: nothing to scan for
    for (;;) {
      const a = this.view(pool);
      while (a.free.length > 0) {
        const index = a.free.shift()!;
        if (!this.excluded(formatMac(macAt(pool, index)), a.revision)) return index;
      }
      if (a.scanned >= pool.size) {
        this.ahead.delete(pool.prefix);
        if (this.inFlight.size > own) return null;
        throw new Exhausted();
      }
      await this.readMore(pool, a);
    }
  }

  /** The current view of a pool; a new one (from the shared cursor) when there is none or it is too old. */
  private view(pool: Pool): Ahead {
    const a = this.ahead.get(pool.prefix);
    if (a && (a.reading || Date.now() - a.readAt < FREE_AHEAD_MS)) return a;
    const fresh: Ahead = { free: [], next: undefined, scanned: 0, fullRuns: 0, revision: 0n, readAt: Date.now() };
    this.ahead.set(pool.prefix, fresh);
    return fresh;
  }

  /** Read the next run of the view; allocations waiting for the same view share one read. */
  private readMore(pool: Pool, a: Ahead): Promise<void> {
    a.reading ??= (async () => {
      a.next ??= await readCursor(this.c, pool);
      if (a.fullRuns > 0) {
        // The last run read was wholly held: skip the rest of a held stretch in O(log n) reads, not one per run.
        const to = await skipHeld(this.c, pool, a.next);
        a.scanned += to - a.next;
        a.next = to >= pool.size ? 0 : to;
        if (a.scanned >= pool.size) return;
      }
      const from = a.next;
      const view = await readRun(this.c, pool, from);
      a.fullRuns = view.free.length === 0 ? a.fullRuns + 1 : 0;
      this.absorb(pool, a, from, view);
    })().finally(() => {
      a.reading = undefined;
    });
    return a.reading;
  }

  /** Add what one read of a run says to a view. */
  private absorb(pool: Pool, a: Ahead, from: number, view: RunView): void {
    if (a.free.length === 0 || view.revision < a.revision) a.revision = view.revision;
    a.readAt = Date.now(); // a scan through a long held run goes on from where it is, however long it takes
    for (const i of view.free) if (!this.excluded(formatMac(macAt(pool, i)), view.revision)) a.free.push(i);
    a.scanned += (view.next === 0 ? pool.size : view.next) - from;
    a.next = view.next;
  }

  /** Claimed by an allocation here right now, or taken here after a read at `revision` (which still shows it free). */
  private excluded(mac: string, revision: bigint): boolean {
    return this.inFlight.has(mac) || (this.took.get(mac)?.revision ?? -1n) > revision;
  }

  /**
   * Claim the chosen addresses. Claims of one pool made side by side in this process go together: while
   * CLAIMS_IN_FLIGHT transactions are out, new claims wait, and the next transaction carries every claim that
   * waited (as many as fit): one round trip and one write of etcd's log for many allocations. Each claim still
   * gets its own answer: its leases, or what a failed transaction read of its addresses.
   */
  private claim(pool: Pool, requests: LeaseRequest[], chosen: Chosen[], leaseId: string | undefined, races: number): Promise<Lease[] | Lost> {
    return new Promise((done, fail) => {
      let q = this.claims.get(pool.prefix);
      if (!q) this.claims.set(pool.prefix, (q = { waiting: [], sending: 0, pumping: false }));
      const leases = requests.map((req, i) => newLease(chosen[i]!.mac, req, this.c.host));
      // Addresses of running VMs hang on the host's etcd lease (a manual allocation on none).
      const onLease = requests.map((req) => (leaseId !== undefined && req.owners.length > 0 ? leaseId : undefined));
      q.waiting.push({ chosen, leases, onLease, races, done, fail });
      this.pump(pool, q);
    });
  }

  /**
   * Send what waits, while fewer than CLAIMS_IN_FLIGHT transactions of the pool are out: once the work of this
   * turn of the event loop is done, so that every claim made in it (the allocations an answer woke, each after
   * its own awaits) goes in the same transaction, not the first one alone.
   */
  private pump(pool: Pool, q: ClaimQueue): void {
    if (q.pumping) return;
    q.pumping = true;
    setImmediate(() => {
      q.pumping = false;
      while (q.sending < CLAIMS_IN_FLIGHT && q.waiting.length > 0) {
        const batch = takeBatch(this.c, q.waiting);
        q.sending += 1;
        void this.send(pool, batch).finally(() => {
          q.sending -= 1;
          this.pump(pool, q);
        });
      }
    });
  }

  /**
   * One transaction for a batch of claims: every chosen address key absent and without a conflict record →
   * the leases (each with its host index key and counted) and the cursor written. Otherwise: each chosen key,
   * the conflict records, and the run where the next attempt starts if a race was lost.
   */
  private async send(pool: Pool, batch: PendingClaim[]): Promise<void> {
    const c = this.c;
    const all = batch.flatMap((p) => p.chosen);
    const ops = successOps(c, batch);
    // The cursor rides along as a shared hint (allocators side by side may leave it a step behind or ahead;
    // reading skips held addresses anyway).
    const last = all.filter((x) => x.kind === 'free').pop();
    if (last !== undefined) ops.push({ request_put: { key: Buffer.from(c.cursorKey(pool)), value: Buffer.from(formatMac(macAt(pool, advance(pool, last.index!)))) } });
    // Where the next attempt starts if this one loses a race: right after the address lost (in order, as a
    // view read a moment too early wants), and after a second race lost in a row, at a random point ahead.
    const races = Math.max(...batch.map((p) => p.races));
    const span = Math.min(pool.size, JUMP << Math.min(Math.max(races - 1, 0), 4), JUMP_MAX);
    const run = last === undefined ? undefined : runFrom(pool, (last.index! + 1 + (races === 0 ? 0 : Math.floor(Math.random() * span))) % pool.size);
    const absent = (key: string) => ({ key: Buffer.from(key), target: 'Create' as const, result: 'Equal' as const, create_revision: 0 });
    let result: Awaited<ReturnType<EtcdConn['client']['kv']['txn']>>;
    try {
      result = await c.call('allocation', () =>
        c.client.kv.txn({
          compare: all.flatMap((x) => [absent(c.macKey(x.mac)), absent(c.conflictKey(x.mac))]),
          success: ops,
          // What the next attempt needs if this one fails is read by the failing transaction itself: one round
          // trip per attempt.
          failure: [...all.map((x) => ({ request_range: { key: Buffer.from(c.macKey(x.mac)) } })), conflictKeysOp(c), ...(run ? [heldKeysOp(c, pool, run)] : [])],
        }),
      );
    } catch (err) {
      for (const p of batch) p.fail(err);
      return;
    }
    const revision = BigInt(result.header.revision);
    if (result.succeeded) {
      const now = Date.now();
      for (const [mac, t] of this.took) {
        if (now - t.at < TOOK_MEMORY_MS) break; // in the order taken: the rest are younger
        this.took.delete(mac);
      }
      for (const x of all) {
        this.took.delete(x.mac); // to the end of the order
        this.took.set(x.mac, { revision, at: now });
      }
      for (const p of batch) p.done(p.leases);
      return;
    }
    const r = result.responses;
    const conflicted = hexOfKeys(r[all.length]!.response_range!.kvs);
    let at = 0;
    const lost = batch.map((p) => {
      const held = p.chosen.map(() => r[at++]!.response_range!.kvs[0]?.value.toString() ?? null);
      return { held, conflicted, revision };
    });
    // A free address found held is a race lost: the view starts again where the failed transaction read.
    if (run && batch.some((p, i) => p.chosen.some((x, j) => x.kind === 'free' && lost[i]!.held[j] !== null))) {
      const a: Ahead = { free: [], next: run.from, scanned: 0, fullRuns: 0, revision, readAt: Date.now() };
      const held = hexOfKeys(r[all.length + 1]!.response_range!.kvs);
      this.absorb(pool, a, run.from, { free: freeInRun(pool, run, held, conflicted), next: run.to >= pool.size ? 0 : run.to, revision });
      this.ahead.set(pool.prefix, a);
    }
    batch.forEach((p, i) => p.done(lost[i]!));
  }

  /** What a failed claim teaches: explicit addresses held are an error; a free address held is a lost race. */
  private learn(pool: Pool, chosen: Chosen[], lost: Lost, preferHeld: Set<string>, races: number): number {
    const c = this.c;
    let raced = false;
    const keep: number[] = []; // free addresses that are still free: the next attempt may aim at them again
    chosen.forEach((x, i) => {
      const text = lost.held[i] ?? null;
      const conflict = lost.conflicted.has(x.mac.replaceAll(':', ''));
      if (x.kind === 'mac') {
        if (text !== null) throw heldError(x.mac, parseQuietly(text, c.macKey(x.mac)), c.host);
        if (conflict) throw new UncloudError('MAC_HELD', `MAC ${x.mac} is under a conflict record in ${c.where} (a running VM uses it while another holds it); it is not handed out while the conflict stands: see 'uncloud-vm mac list'`);
      } else if (x.kind === 'prefer') {
        if (text !== null || conflict) preferHeld.add(x.mac);
      } else if (text !== null) raced = true;
      else if (!conflict) keep.push(x.index!); // an address under a conflict record is passed, not raced for
    });
    if (!raced) this.view(pool).free.unshift(...keep);
    // A race lost: the failed transaction put a fresh view of where the next attempt starts (send).
    return raced ? races + 1 : races;
  }
}

/** What a failed claim read: each chosen key's value (null: absent), the conflict records, at which revision. */
interface Lost {
  held: (string | null)[];
  conflicted: Set<string>;
  revision: bigint;
}

/** A claim waiting for (or in) a transaction: its addresses, the leases it writes and the etcd lease of each. */
interface PendingClaim {
  chosen: Chosen[];
  leases: Lease[];
  onLease: (string | undefined)[];
  races: number;
  done: (r: Lease[] | Lost) => void;
  fail: (err: unknown) => void;
}

interface ClaimQueue {
  waiting: PendingClaim[];
  /** Transactions out. */
  sending: number;
  /** A send of what waits is due at the end of this turn of the event loop. */
  pumping: boolean;
}

/** The puts of a batch: each lease with its host index key (on no etcd lease, etcd-host-index.ts), and the count (etcd-held-count.ts). */
function successOps(c: EtcdConn, batch: PendingClaim[]): IRequestOp[] {
  const count = new CountDelta();
  const ops: IRequestOp[] = [];
  for (const p of batch) {
    p.leases.forEach((l, i) => {
      const lease = p.onLease[i];
      count.add(l.mac, c.host, lease, 1);
      const put = { key: Buffer.from(c.macKey(l.mac)), value: Buffer.from(serializeLease(l)) };
      ops.push({ request_put: lease === undefined ? put : { ...put, lease } }, { request_put: { key: Buffer.from(c.indexKey(c.host, l.mac)), value: Buffer.alloc(0) } });
    });
  }
  ops.push(...count.ops(c));
  return ops;
}

/**
 * The claims that go in the next transaction, taken from the front of `waiting`: the first always; then, in
 * order, each that fits (TXN_CHUNK addresses in all, the puts under etcd's 128 operations) and names no address
 * of another claim in it (etcd refuses a transaction that writes one key twice; the later claim waits).
 */
function takeBatch(c: EtcdConn, waiting: PendingClaim[]): PendingClaim[] {
  const count = new CountDelta();
  const counted = (p: PendingClaim, n: 1 | -1) => p.leases.forEach((l, i) => count.add(l.mac, c.host, p.onLease[i], n));
  const batch = [waiting.shift()!];
  if (waiting.length === 0) return batch; // alone (one allocator): nothing to weigh
  counted(batch[0]!, 1);
  const macs = new Set(batch[0]!.chosen.map((x) => x.mac));
  while (waiting.length > 0) {
    const next = waiting[0]!;
    if (macs.size + next.chosen.length > TXN_CHUNK || next.chosen.some((x) => macs.has(x.mac))) break;
    counted(next, 1);
    // Two puts per address, the count's, the cursor's.
    if (2 * (macs.size + next.chosen.length) + count.ops(c).length + 1 > MAX_TXN_OPS) {
      counted(next, -1);
      break;
    }
    batch.push(waiting.shift()!);
    for (const x of next.chosen) macs.add(x.mac);
  }
  return batch;
}

function parseQuietly(text: string, key: string): Lease | null {
  try {
    return parseLease(text, key);
  } catch {
    return null;
  }
}
