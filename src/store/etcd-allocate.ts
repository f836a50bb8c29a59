/**
 * Allocation in the etcd store: one transaction per attempt. Its compare is the claim (every chosen address
 * key absent, and no conflict record on it); it writes the leases and the shared cursor; when it fails, the
 * same round trip reads what the next attempt needs (which chosen keys are held, and a fresh run of the pool).
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
import type { EtcdConn } from './etcd-client.js';
import { CountDelta } from './etcd-held-count.js';
import { conflictKeysOp, freeInRun, heldKeysOp, hexOfKeys, readCursor, readRun, runFrom, type RunView, skipHeld } from './etcd-free-scan.js';
import { parseLease, serializeLease } from './lease.js';
import { Exhausted, heldError, newLease } from './policy.js';
import type { Lease, LeaseRequest } from './store.js';

/** Addresses per transaction: two compares and two puts each, the cursor and the count puts (up to 5 per etcd lease) under etcd's 128 operations. */
const TXN_CHUNK = 56;
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
   * One transaction: every chosen address key absent and without a conflict record → the leases and the cursor
   * written. Otherwise: each chosen key, the conflict records, and the run where the next attempt starts if a
   * race was lost.
   */
  private async claim(pool: Pool, requests: LeaseRequest[], chosen: Chosen[], leaseId: string | undefined, races: number): Promise<Lease[] | Lost> {
    const c = this.c;
    const leases = requests.map((req, i) => newLease(chosen[i]!.mac, req, c.host));
    let txn = c.client.if(c.macKey(chosen[0]!.mac), 'Create', '==', 0).and(c.conflictKey(chosen[0]!.mac), 'Create', '==', 0);
    for (const x of chosen.slice(1)) txn = txn.and(c.macKey(x.mac), 'Create', '==', 0).and(c.conflictKey(x.mac), 'Create', '==', 0);
    // Each lease with its host index key, on no etcd lease (etcd-host-index.ts), and counted (etcd-held-count.ts).
    const onLease = (i: number) => (leaseId !== undefined && requests[i]!.owners.length > 0 ? leaseId : undefined);
    const count = new CountDelta();
    const puts = leases.flatMap((l, i) => {
      const id = onLease(i);
      count.add(l.mac, c.host, id, 1);
      const put = c.client.put(c.macKey(l.mac)).value(serializeLease(l));
      return [id !== undefined ? put.lease(id) : put, c.client.put(c.indexKey(c.host, l.mac)).value('')];
    });
    // The cursor rides along as a shared hint (allocators side by side may leave it a step behind or ahead;
    // reading skips held addresses anyway).
    const last = chosen.filter((x) => x.kind === 'free').pop();
    const cursorPut = last === undefined ? [] : [c.client.put(c.cursorKey(pool)).value(formatMac(macAt(pool, advance(pool, last.index!))))];
    // Where the next attempt starts if this one loses a race: right after the address lost (in order, as a
    // view read a moment too early wants), and after a second race lost in a row, at a random point ahead.
    const span = Math.min(pool.size, JUMP << Math.min(Math.max(races - 1, 0), 4), JUMP_MAX);
    const run = last === undefined ? undefined : runFrom(pool, (last.index! + 1 + (races === 0 ? 0 : Math.floor(Math.random() * span))) % pool.size);
    // What the next attempt needs if this one fails is read by the failing transaction itself: one round trip
    // per attempt.
    const lostReads = [...chosen.map((x) => c.client.get(c.macKey(x.mac))), conflictKeysOp(c), ...(run ? [heldKeysOp(c, pool, run)] : [])];
    const result = await c.call('allocation', () => txn.then(...puts, ...count.ops(c), ...cursorPut).else(...lostReads).commit());
    if (result.succeeded) {
      const revision = BigInt(result.header.revision);
      const now = Date.now();
      for (const [mac, t] of this.took) {
        if (now - t.at < TOOK_MEMORY_MS) break; // in the order taken: the rest are younger
        this.took.delete(mac);
      }
      for (const x of chosen) {
        this.took.delete(x.mac); // to the end of the order
        this.took.set(x.mac, { revision, at: now });
      }
      return leases;
    }
    const r = result.responses;
    const held = chosen.map((_, i) => r[i]!.response_range.kvs[0]?.value.toString() ?? null);
    const conflicted = hexOfKeys(r[chosen.length]!.response_range.kvs);
    const fresh = run ? { run, held: hexOfKeys(r[chosen.length + 1]!.response_range.kvs) } : undefined;
    return { held, conflicted, fresh, revision: BigInt(result.header.revision) };
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
    if (!raced) {
      this.view(pool).free.unshift(...keep);
      return races;
    }
    // Lost a race: start again where the failed claim read.
    if (lost.fresh) {
      const a: Ahead = { free: [], next: lost.fresh.run.from, scanned: 0, fullRuns: 0, revision: lost.revision, readAt: Date.now() };
      const view: RunView = {
        free: freeInRun(pool, lost.fresh.run, lost.fresh.held, lost.conflicted),
        next: lost.fresh.run.to >= pool.size ? 0 : lost.fresh.run.to,
        revision: lost.revision,
      };
      this.absorb(pool, a, lost.fresh.run.from, view);
      this.ahead.set(pool.prefix, a);
    }
    return races + 1;
  }
}

/** What a failed claim read: each chosen key's value (null: absent), the conflict records, the run ahead. */
interface Lost {
  held: (string | null)[];
  conflicted: Set<string>;
  fresh: { run: { from: number; to: number }; held: Set<string> } | undefined;
  revision: bigint;
}

function parseQuietly(text: string, key: string): Lease | null {
  try {
    return parseLease(text, key);
  } catch {
    return null;
  }
}
