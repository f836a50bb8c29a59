/**
 * Allocation in the etcd store. An allocation is one transaction: if every chosen address key is absent
 * (create revision 0), all of them and the advanced cursor are written; a lost race backs off and scans again
 * from the cursor.
 */
import { UncloudError } from '../core/errors.js';
import { advance, formatMac, inPool, macAt, parseMac, type Pool } from '../core/mac.js';
import type { EtcdConn } from './etcd-client.js';
import { freeIndices, readCursor } from './etcd-free-scan.js';
import { exists, getLeaseQuietly } from './etcd-read.js';
import { serializeLease } from './lease.js';
import { Exhausted, heldError, newLease } from './policy.js';
import type { Lease, LeaseRequest } from './store.js';

const TXN_CHUNK = 60;
const MAX_ATTEMPTS = 1000;
/** How many free addresses one read looks ahead, and for how long they are trusted. */
const FREE_AHEAD = 64;
const FREE_AHEAD_MS = 2000;

export class EtcdAllocator {
  /** Addresses this process is claiming right now: allocations running side by side in one process never race for one. */
  private readonly claiming = new Set<string>();
  /**
   * The next free addresses after the cursor as last read, per pool: allocations in this process take them in
   * order with one transaction each (the claim is still the compare), and read again only when they run out,
   * after a lost race, or after FREE_AHEAD_MS (so an address freed meanwhile is not taken behind the cursor).
   */
  private readonly freeAhead = new Map<string, { indices: number[]; read: number }>();
  /** Addresses this process took in the last FREE_AHEAD_MS: a read that began before they were written still shows them free. */
  private readonly takenHere = new Map<string, number>();

  constructor(
    private readonly c: EtcdConn,
    /** Gives back what an earlier chunk took when a later one fails. */
    private readonly release: (mac: string) => Promise<boolean>,
  ) {}

  /** An address this process freed: no longer in flight. */
  forget(mac: string): void {
    this.takenHere.delete(mac);
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
    const c = this.c;
    // Races lost to other processes (a claim that failed on what was read ahead earlier is no race: read again).
    let races = 0;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      let cursor: number | undefined; // moves only when an address is picked from the cursor on
      let readAhead = false;
      const chosen: string[] = [];
      const claimed: string[] = []; // what this attempt added to this.claiming
      try {
        for (const req of requests) {
          if (req.mac !== undefined) {
            if (await exists(c, req.mac)) throw heldError(req.mac, await getLeaseQuietly(c, req.mac), c.host);
            chosen.push(req.mac);
            continue;
          }
          if (req.prefer !== undefined && inPool(pool, parseMac(req.prefer)) && !chosen.includes(req.prefer) && !this.claiming.has(req.prefer) && !(await exists(c, req.prefer))) {
            chosen.push(req.prefer);
            claimed.push(req.prefer);
            this.claiming.add(req.prefer);
            continue;
          }
          // First try: the next free address that no allocation of this process is claiming. After a lost race
          // (another process), a random one of the next few free ones, so racing allocators spread out.
          const window = races === 0 ? 1 : Math.min(64, 8 << Math.min(races, 3));
          const skip = () => new Set([...chosen, ...this.claiming, ...this.takenHere.keys()]);
          const got = await this.freeAfterCursor(pool, races === 0, skip());
          readAhead ||= got.readAhead;
          const now = skip(); // again: others may have picked while this one read
          const free = got.indices.filter((i) => !now.has(formatMac(macAt(pool, i))));
          if (free.length === 0) {
            if (this.claiming.size > claimed.length) break; // another allocation here claims what looked free: look again
            if (this.takenHere.size > 0) {
              this.takenHere.clear(); // maybe freed since by another process: look again without skipping them
              break;
            }
            throw new Exhausted();
          }
          const pick = free.slice(0, window);
          const index = pick[Math.floor(Math.random() * pick.length)]!;
          const ahead = this.freeAhead.get(pool.prefix)?.indices;
          if (ahead?.includes(index)) ahead.splice(ahead.indexOf(index), 1);
          const mac = formatMac(macAt(pool, index));
          chosen.push(mac);
          claimed.push(mac);
          this.claiming.add(mac);
          cursor = advance(pool, index);
        }
        const leases = chosen.length === requests.length ? await this.claim(pool, requests, chosen, cursor, leaseId) : null;
        if (leases) return leases;
      } finally {
        for (const mac of claimed) this.claiming.delete(mac);
      }
      if (readAhead) continue;
      // Lost a race for an address: back off a little (jittered, growing) and scan again.
      races += 1;
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(20, 2 ** Math.min(races, 5))));
    }
    throw new UncloudError('ETCD_CONTENTION', `${c.where}: allocation lost ${MAX_ATTEMPTS} races in a row; try again`);
  }

  /** Free indices after the cursor: the ones read ahead while they last and are fresh, else a new read. */
  private async freeAfterCursor(pool: Pool, reuse: boolean, skip: Set<string>): Promise<{ indices: number[]; readAhead: boolean }> {
    const ahead = this.freeAhead.get(pool.prefix);
    if (reuse && ahead && Date.now() - ahead.read < FREE_AHEAD_MS && ahead.indices.some((i) => !skip.has(formatMac(macAt(pool, i))))) {
      return { indices: [...ahead.indices], readAhead: true };
    }
    const indices = await freeIndices(this.c, pool, await readCursor(this.c, pool), skip, FREE_AHEAD);
    this.freeAhead.set(pool.prefix, { indices, read: Date.now() });
    return { indices: [...indices], readAhead: false };
  }

  /** One transaction: every chosen address key absent (and no conflict on it), then all of them and the cursor written; null if a race was lost. */
  private async claim(pool: Pool, requests: LeaseRequest[], chosen: string[], cursor: number | undefined, leaseId: string | undefined): Promise<Lease[] | null> {
    const c = this.c;
    const leases = requests.map((req, i) => newLease(chosen[i]!, req, c.host));
    // The claim is the compare: every chosen address key absent. The cursor rides along as a shared
    // hint (two allocators racing may leave it a step behind; the scan skips held addresses anyway).
    // An address under a conflict record is not handed out while the conflict stands.
    let txn = c.client.if(c.macKey(chosen[0]!), 'Create', '==', 0).and(c.conflictKey(chosen[0]!), 'Create', '==', 0);
    for (const mac of chosen.slice(1)) txn = txn.and(c.macKey(mac), 'Create', '==', 0).and(c.conflictKey(mac), 'Create', '==', 0);
    const puts = leases.map((l, i) => {
      const put = c.client.put(c.macKey(l.mac)).value(serializeLease(l));
      return leaseId !== undefined && requests[i]!.owners.length > 0 ? put.lease(leaseId) : put;
    });
    const cursorPut = cursor === undefined ? [] : [c.client.put(c.cursorKey(pool)).value(formatMac(macAt(pool, cursor)))];
    const result = await c.call('allocation', () => txn.then(...puts, ...cursorPut).commit());
    if (!result.succeeded) {
      this.freeAhead.delete(pool.prefix); // what was read ahead is stale: read again
      return null;
    }
    const now = Date.now();
    for (const [mac, at] of this.takenHere) if (now - at > FREE_AHEAD_MS) this.takenHere.delete(mac);
    for (const mac of chosen) this.takenHere.set(mac, now);
    return leases;
  }
}
