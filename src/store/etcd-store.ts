/**
 * The cluster MAC pool on etcd, for hosts that share one layer-2 network.
 *
 *   <prefix>/macs/<12 hex>      one key per held address (the Lease record as JSON)
 *   <prefix>/cursors/<pool>     the shared rotating cursor of a pool
 *   <prefix>/vms/<name>         what a named VM had last time (UUID, MAC per NIC); holds no address
 *   <prefix>/hosts/<host>       the host agent's etcd lease id, attached to that lease
 *   <prefix>/conflicts/<12 hex> a MAC a running VM uses while another holds its key (etcd-host-lease.ts)
 *
 * An allocation is one transaction: if every chosen address key is absent (create revision 0), all of them
 * and the advanced cursor are written; a lost race backs off and scans again from the cursor.
 * Addresses of running VMs (leases with owners) are attached to an etcd lease of their host, kept alive by
 * `uncloud-vm agent` (or, without one, by the foreground launcher itself): when a host dies its addresses
 * return to the pool after the TTL. Manual allocations have no TTL and stay until released.
 */
import { hostname } from 'node:os';
import { Etcd3, type Lease as EtcdLease } from 'etcd3';
import { UncloudError } from '../core/errors.js';
import { advance, checkInPool, exhaustedError, formatMac, indexOf, inPool, macAt, parseMac, type Pool, usable, usableCount } from '../core/mac.js';
import type { EtcdTarget } from '../core/store-url.js';
import { isOwnerAlive } from '../system/proc.js';
import { announce, ensureAnnounced, type EtcdAccess, type HostAgent, reassert, type ReassertResult } from './etcd-host-lease.js';
import { parseConflict, parseIdentity, parseLease, serializeLease } from './lease.js';
import { allocateOrGc, byMac, conflictMessage, Exhausted, FIRST_CURSOR, heldError, isStale, newLease } from './policy.js';
import type { Conflict, DamagedRecord, KeepLease, Lease, LeaseList, LeaseRequest, Owner, PoolStatus, Store, VmIdentity } from './store.js';

export interface EtcdStoreOptions {
  target: EtcdTarget;
  host?: string;
  isAlive?: (o: Owner) => boolean;
  auth?: { username: string; password: string };
  credentials?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer };
  /** Refuse ephemeral leases without a running agent (systemd units and detached VMs need one). */
  requireAgent?: boolean;
  /** Told when the keep-alive of this process's own etcd lease fails or recovers. */
  onLeaseTrouble?: (msg: string) => void;
}

const SCAN_BATCH = 256;
const TXN_CHUNK = 60;
/** Keys per page of a long read: etcd refuses a reply over 4 MiB (about 20,000 lease records in one). */
const PAGE = 2000;
const MAX_ATTEMPTS = 1000;
const CALL_DEADLINE_MS = 5000;
/** How many free addresses one read looks ahead, and for how long they are trusted. */
const FREE_AHEAD = 64;
const FREE_AHEAD_MS = 2000;

export class EtcdStore implements Store, HostAgent {
  readonly where: string;
  private readonly client: Etcd3;
  /** Leases this process took for running VMs: re-asserted if this process's own etcd lease is lost. */
  private readonly heldHere = new Map<string, Lease>();
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
  private readonly p: string;
  readonly host: string;
  private readonly isAlive: (o: Owner) => boolean;
  private ownLease: EtcdLease | undefined;
  private ownLeaseId: Promise<string> | undefined;

  constructor(private readonly opts: EtcdStoreOptions) {
    const t = opts.target;
    this.where = `etcd store ${t.endpoints.map((e) => e.replace(/^https?:\/\//, '')).join(',')}${t.prefix}`;
    this.p = t.prefix;
    this.host = opts.host ?? hostname();
    this.isAlive = opts.isAlive ?? isOwnerAlive;
    this.client = new Etcd3({
      hosts: t.endpoints,
      dialTimeout: 3000,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
      ...(opts.auth ? { auth: opts.auth } : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
    });
  }

  // --- keys ---
  private macKey(mac: string): string {
    return `${this.p}/macs/${mac.replaceAll(':', '')}`;
  }
  private cursorKey(pool: Pool): string {
    return `${this.p}/cursors/${pool.prefix}`;
  }
  private vmKey(name: string): string {
    return `${this.p}/vms/${name}`;
  }
  private hostKey(host = this.host): string {
    return `${this.p}/hosts/${host}`;
  }
  private conflictKey(mac: string): string {
    return `${this.p}/conflicts/${mac.replaceAll(':', '')}`;
  }

  private access(): EtcdAccess {
    return {
      client: this.client,
      host: this.host,
      where: this.where,
      ttlS: this.opts.target.ttlS,
      macKey: (m) => this.macKey(m),
      hostKey: (h) => this.hostKey(h),
      conflictKey: (m) => this.conflictKey(m),
      call: (what, fn) => this.call(what, fn),
    };
  }

  /** Every etcd call goes through here: a failure becomes one clear error naming the endpoints. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof UncloudError || err instanceof Exhausted) throw err;
      const msg = (err as Error).message.split('\n')[0] ?? '';
      const cause = /Last error: (?:Error: )?(.+?)(?:\.? - |\. Resolution note|$)/.exec(msg)?.[1]?.trim();
      if (/UNAVAILABLE|DEADLINE_EXCEEDED|ECONNREFUSED|GRPCConnectFailed|circuit/i.test(msg)) {
        throw new UncloudError(
          'ETCD_UNAVAILABLE',
          `${this.where}: ${what} failed: cannot reach etcd${cause ? ` (${cause})` : ''}; check that etcd runs and the endpoints are right`,
        );
      }
      throw new UncloudError('ETCD_FAILED', `${this.where}: ${what} failed: ${msg}`);
    }
  }

  async allocate(pool: Pool, requests: LeaseRequest[]): Promise<Lease[]> {
    for (const req of requests) {
      if (req.mac !== undefined) checkInPool(pool, req.mac);
    }
    const ephemeral = requests.some((r) => r.owners.length > 0);
    const leaseId = ephemeral ? await this.hostLeaseId() : undefined;
    const leases = await allocateOrGc(
      pool,
      () => this.allocateChunks(pool, requests, leaseId),
      () => this.gc(),
    );
    // What this process holds for running VMs: re-created if their keys expire while etcd is away.
    leases.forEach((l, i) => {
      if (requests[i]!.owners.length > 0) this.heldHere.set(l.mac, l);
    });
    return leases;
  }

  /**
   * etcd caps a transaction at 128 operations: a request for more addresses than fit in one goes in
   * chunks, and what earlier chunks took is given back if a later one fails (all or none).
   */
  private async allocateChunks(pool: Pool, requests: LeaseRequest[], leaseId: string | undefined): Promise<Lease[]> {
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
            if (await this.exists(req.mac)) throw heldError(req.mac, await this.getLeaseQuietly(req.mac), this.host);
            chosen.push(req.mac);
            continue;
          }
          if (req.prefer !== undefined && inPool(pool, parseMac(req.prefer)) && !chosen.includes(req.prefer) && !this.claiming.has(req.prefer) && !(await this.exists(req.prefer))) {
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
    throw new UncloudError('ETCD_CONTENTION', `${this.where}: allocation lost ${MAX_ATTEMPTS} races in a row; try again`);
  }

  /** Free indices after the cursor: the ones read ahead while they last and are fresh, else a new read. */
  private async freeAfterCursor(pool: Pool, reuse: boolean, skip: Set<string>): Promise<{ indices: number[]; readAhead: boolean }> {
    const ahead = this.freeAhead.get(pool.prefix);
    if (reuse && ahead && Date.now() - ahead.read < FREE_AHEAD_MS && ahead.indices.some((i) => !skip.has(formatMac(macAt(pool, i))))) {
      return { indices: [...ahead.indices], readAhead: true };
    }
    const indices = await this.freeIndices(pool, await this.readCursor(pool), skip, FREE_AHEAD);
    this.freeAhead.set(pool.prefix, { indices, read: Date.now() });
    return { indices: [...indices], readAhead: false };
  }

  /** One transaction: every chosen address key absent (and no conflict on it), then all of them and the cursor written; null if a race was lost. */
  private async claim(pool: Pool, requests: LeaseRequest[], chosen: string[], cursor: number | undefined, leaseId: string | undefined): Promise<Lease[] | null> {
    const leases = requests.map((req, i) => newLease(chosen[i]!, req, this.host));
    // The claim is the compare: every chosen address key absent. The cursor rides along as a shared
    // hint (two allocators racing may leave it a step behind; the scan skips held addresses anyway).
    // An address under a conflict record is not handed out while the conflict stands.
    let txn = this.client.if(this.macKey(chosen[0]!), 'Create', '==', 0).and(this.conflictKey(chosen[0]!), 'Create', '==', 0);
    for (const mac of chosen.slice(1)) txn = txn.and(this.macKey(mac), 'Create', '==', 0).and(this.conflictKey(mac), 'Create', '==', 0);
    const puts = leases.map((l, i) => {
      const put = this.client.put(this.macKey(l.mac)).value(serializeLease(l));
      return leaseId !== undefined && requests[i]!.owners.length > 0 ? put.lease(leaseId) : put;
    });
    const cursorPut = cursor === undefined ? [] : [this.client.put(this.cursorKey(pool)).value(formatMac(macAt(pool, cursor)))];
    const result = await this.call('allocation', () => txn.then(...puts, ...cursorPut).commit());
    if (!result.succeeded) {
      this.freeAhead.delete(pool.prefix); // what was read ahead is stale: read again
      return null;
    }
    const now = Date.now();
    for (const [mac, at] of this.takenHere) if (now - at > FREE_AHEAD_MS) this.takenHere.delete(mac);
    for (const mac of chosen) this.takenHere.set(mac, now);
    return leases;
  }

  private async nextFree(pool: Pool, cursor: number, also: Set<string>): Promise<number | null> {
    return (await this.freeIndices(pool, cursor, also, 1))[0] ?? null;
  }

  /** Up to `want` free indices from the cursor (wrapping), reading held keys in batches, not one by one. */
  private async freeIndices(pool: Pool, cursor: number, also: Set<string>, want: number): Promise<number[]> {
    const out: number[] = [];
    if (usableCount(pool) === 0) return out;
    // Addresses under a conflict record count as held (rare: usually an empty range).
    const conflicted = new Set(
      (await this.call('scan', () => this.client.getAll().prefix(`${this.p}/conflicts/`).keys())).map((k) => k.slice(k.lastIndexOf('/') + 1)),
    );
    const held = async (from: number, to: number): Promise<Set<string>> => {
      const start = this.macKey(formatMac(macAt(pool, from)));
      const end = to >= pool.size ? `${this.p}/macs/${formatMac(pool.base + pool.size - 1).replaceAll(':', '')}\u0000` : this.macKey(formatMac(macAt(pool, to)));
      const keys = await this.call('scan', () => this.client.getAll().inRange({ start, end }).keys());
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
        const hex = mac.replaceAll(':', '');
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

  /** The cursor's index; a new pool starts at suffix 1, as in the file store. */
  private async readCursor(pool: Pool): Promise<number> {
    const text = await this.call('reading the cursor', () => this.client.get(this.cursorKey(pool)).string());
    if (text === null) return FIRST_CURSOR;
    let index: number;
    try {
      index = indexOf(pool, parseMac(text));
    } catch {
      throw new UncloudError('STATE_DAMAGED', `${this.where}: cursor key ${this.cursorKey(pool)} is damaged ('${text.slice(0, 40)}'); repair or delete it`);
    }
    return index;
  }

  private async exists(mac: string): Promise<boolean> {
    return this.call('lookup', () => this.client.get(this.macKey(mac)).exists());
  }

  get(mac: string): Promise<Lease | null> {
    return this.getLeaseQuietly(formatMac(parseMac(mac)));
  }

  /** The lease of a MAC, or null when it is free or its record is damaged. */
  private async getLeaseQuietly(mac: string): Promise<Lease | null> {
    const text = await this.call('lookup', () => this.client.get(this.macKey(mac)).string());
    try {
      return text === null ? null : parseLease(text, this.macKey(mac));
    } catch {
      return null;
    }
  }

  async peek(pool: Pool, count: number): Promise<string[]> {
    let cursor = await this.readCursor(pool);
    const out: string[] = [];
    while (out.length < count) {
      const i = await this.nextFree(pool, cursor, new Set(out));
      if (i === null) throw exhaustedError(pool);
      out.push(formatMac(macAt(pool, i)));
      cursor = advance(pool, i);
    }
    return out;
  }

  async release(mac: string, expectVm?: string): Promise<boolean> {
    const key = this.macKey(formatMac(parseMac(mac)));
    const res = await this.call('release', () => this.client.get(key).exec());
    const kv = res.kvs[0];
    if (!kv) return false;
    // A damaged lease can be released by its MAC (that is how an operator repairs it), never on a VM's behalf.
    if (expectVm !== undefined) {
      let lease: Lease | null = null;
      try {
        lease = parseLease(kv.value.toString(), key);
      } catch {
        return false;
      }
      if (lease.vm?.uuid !== expectVm && lease.vm?.name !== expectVm) return false;
    }
    const r = await this.call('release', () =>
      this.client.if(key, 'Mod', '==', String(kv.mod_revision)).then(this.client.delete().key(key)).commit(),
    );
    if (r.succeeded) {
      this.heldHere.delete(formatMac(parseMac(mac)));
      this.takenHere.delete(formatMac(parseMac(mac))); // freed here: no longer in flight
    }
    return r.succeeded;
  }

  async setOwners(macs: string[], owners: Owner[]): Promise<void> {
    for (const mac of macs) {
      const key = this.macKey(mac);
      const res = await this.call('update', () => this.client.get(key).exec());
      const kv = res.kvs[0];
      if (!kv) throw new UncloudError('LEASE_GONE', `lease of ${mac} disappeared from ${this.where}`);
      const lease = parseLease(kv.value.toString(), key);
      const next = { ...lease, owners, host: this.host };
      // Owners mean a running VM: attach to this host's etcd lease if it was not attached yet.
      const leaseId = String(kv.lease) !== '0' ? String(kv.lease) : owners.length > 0 ? await this.hostLeaseId() : undefined;
      const put = this.client.put(key).value(serializeLease(next));
      await this.call('update', () =>
        this.client.if(key, 'Mod', '==', String(kv.mod_revision)).then(leaseId !== undefined ? put.lease(leaseId) : put).commit(),
      );
    }
  }

  /**
   * Every key and value from `start` (inclusive) to `end` (exclusive), a page at a time, so a range of any size
   * is read without meeting etcd's 4 MiB reply limit.
   */
  private async *pages(what: string, start: string, end: string): AsyncGenerator<[string, string][]> {
    let from = start;
    for (;;) {
      const range = { start: from, end };
      // In key order, as etcd keeps them (asking for a sort would make etcd read the whole range for every page).
      const res = await this.call(what, () => this.client.getAll().inRange(range).limit(PAGE).exec());
      const page = res.kvs.map((kv): [string, string] => [kv.key.toString(), kv.value.toString()]);
      if (page.length > 0) yield page;
      if (!res.more || page.length === 0) return;
      from = `${page[page.length - 1]![0]}\u0000`;
    }
  }

  /** The same for every key under a prefix. */
  private prefixPages(what: string, prefix: string): AsyncGenerator<[string, string][]> {
    return this.pages(what, prefix, prefixEnd(prefix));
  }

  /** Every record under a prefix, parsed; the damaged ones are listed apart. */
  private async readAll<T>(prefix: string, parse: (text: string, key: string) => T, damagedRecords: DamagedRecord[]): Promise<T[]> {
    const out: T[] = [];
    for await (const page of this.prefixPages('list', prefix)) {
      for (const [k, v] of page) {
        try {
          out.push(parse(v, k));
        } catch (err) {
          damagedRecords.push({ key: k, why: (err as Error).message });
        }
      }
    }
    return out;
  }

  async list(): Promise<LeaseList> {
    const damagedRecords: DamagedRecord[] = [];
    const leases = await this.readAll(`${this.p}/macs/`, parseLease, damagedRecords);
    const conflicts = await this.readAll(`${this.p}/conflicts/`, parseConflict, damagedRecords);
    return { leases: leases.sort(byMac), damaged: damagedRecords, conflicts };
  }

  async setConflict(mac: string, conflict: Conflict | null): Promise<void> {
    const key = this.conflictKey(mac);
    if (conflict === null) await this.call('clearing a conflict', () => this.client.delete().key(key).exec());
    else await this.call('recording a conflict', () => this.client.put(key).value(JSON.stringify(conflict)).exec());
  }

  async status(pool: Pool): Promise<PoolStatus> {
    // The split per host reads every record, a page at a time; the count alone would be one count-only read.
    const prefixHex = pool.prefix.replaceAll(':', '');
    const byHost: Record<string, number> = {};
    let held = 0;
    for await (const page of this.prefixPages('list', `${this.p}/macs/${prefixHex}`)) {
      for (const [k, v] of page) {
        let host = 'damaged records';
        try {
          host = parseLease(v, k).host;
        } catch {
          // counted as held (the key is there), under its own heading
        }
        byHost[host] = (byHost[host] ?? 0) + 1;
        held += 1;
      }
    }
    const cursor = await this.readCursor(pool);
    return { prefix: pool.prefix, size: pool.size, held, cursor: formatMac(macAt(pool, cursor)), byHost };
  }

  /** Free this host's leases whose owners are all gone. Other hosts' leases are theirs (and their TTL's). */
  async gc(keep?: KeepLease): Promise<Lease[]> {
    const freed: Lease[] = [];
    for await (const page of this.prefixPages('gc', `${this.p}/macs/`)) {
      for (const [k, v] of page) {
        let lease: Lease;
        try {
          lease = parseLease(v, k);
        } catch {
          continue; // a damaged record is reported by list, never freed by gc
        }
        if (lease.host !== this.host || !isStale(lease, this.isAlive, keep)) continue;
        if (await this.release(lease.mac, lease.vm?.uuid ?? lease.vm?.name)) freed.push(lease);
      }
    }
    return freed;
  }

  async getIdentity(name: string): Promise<VmIdentity | null> {
    const text = await this.call('lookup', () => this.client.get(this.vmKey(name)).string());
    return text === null ? null : parseIdentity(text, this.vmKey(name));
  }

  async putIdentity(identity: VmIdentity): Promise<void> {
    await this.call('write', () => this.client.put(this.vmKey(identity.name)).value(JSON.stringify(identity)).exec());
  }

  async listIdentities(): Promise<VmIdentity[]> {
    const out: VmIdentity[] = [];
    for await (const page of this.prefixPages('list', `${this.p}/vms/`)) out.push(...page.map(([k, v]) => parseIdentity(v, k)));
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async deleteIdentity(name: string): Promise<boolean> {
    const r = await this.call('delete', () => this.client.delete().key(this.vmKey(name)).exec());
    return Number(r.deleted) > 0;
  }

  /**
   * The etcd lease this host's running VMs hang on: the agent's when one runs, else one of this
   * process's own, kept alive while it runs.
   */
  async hostLeaseId(): Promise<string> {
    const agent = await this.call('agent lookup', () => this.client.get(this.hostKey()).string());
    if (agent !== null) {
      try {
        const id = (JSON.parse(agent) as { leaseId?: string }).leaseId;
        if (typeof id === 'string' && id !== '') return id;
      } catch {
        // an unreadable agent record: fall through
      }
    }
    if (this.opts.requireAgent) {
      throw new UncloudError(
        'NO_AGENT',
        `${this.where}: no 'uncloud-vm agent' runs for host ${this.host}; VMs under systemd or detached need it to keep their leases alive (start it, e.g. with 'uncloud-vm agent --unit --install --enable')`,
      );
    }
    if (!this.ownLeaseId) {
      const lease = this.client.lease(this.opts.target.ttlS);
      this.ownLease = lease;
      lease.on('keepaliveFailed', () => this.opts.onLeaseTrouble?.(`${this.where}: keep-alive failed; retrying (the VM keeps running)`));
      lease.on('keepaliveSucceeded', () => undefined);
      lease.on('lost', (err) => {
        this.opts.onLeaseTrouble?.(`${this.where}: lease lost (${err.message}); taking a new one`);
        this.ownLeaseId = undefined;
        void this.hostLeaseId()
          .then((id) => this.reassert(id, [...this.heldHere.values()]))
          .then((r) => {
            this.opts.onLeaseTrouble?.(`${this.where}: leases re-asserted (${r.kept} kept, ${r.recreated.length} created again, ${r.conflicts.length} taken by others meanwhile)`);
            for (const c of r.conflicts) this.opts.onLeaseTrouble?.(conflictMessage(c));
          })
          .catch((e) => this.opts.onLeaseTrouble?.(`${this.where}: could not re-attach leases: ${(e as Error).message}`));
      });
      this.ownLeaseId = this.call('lease grant', () => lease.grant());
    }
    return this.ownLeaseId;
  }

  // --- the host agent's side (etcd-host-lease.ts) ---

  takeLease(): Promise<{ id: string; lease: EtcdLease }> {
    return announce(this.access());
  }

  ensureAnnounced(held: { id: string; lease: EtcdLease }): Promise<boolean> {
    return ensureAnnounced(this.access(), held);
  }

  reassert(id: string, expected: Lease[]): Promise<ReassertResult> {
    return reassert(this.access(), id, expected);
  }

  async close(): Promise<void> {
    // This process's own lease ends with it: whatever still hangs on it is given up at once, not after the TTL.
    if (this.ownLease) await this.ownLease.revoke().catch(() => undefined);
    this.client.close();
  }
}

/** The first key after every key that starts with `prefix` (etcd's range end for a prefix). */
function prefixEnd(prefix: string): string {
  return `${prefix.slice(0, -1)}${String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)}`;
}
