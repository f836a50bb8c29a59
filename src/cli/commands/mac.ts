/** `uncloud-vm mac …`: the pool itself, like the old mac-gen.py (allocate prints only the MAC). */
import { basename } from 'node:path';
import { UncloudError, usageError } from '../../core/errors.js';
import { formatMac, parseMac } from '../../core/mac.js';
import { UUID_RE } from '../../core/vm-identity.js';
import { conflictMessage } from '../../store/policy.js';
import type { Conflict, DamagedRecord, Lease, LeasePage, Owner } from '../../store/store.js';
import { isOwnerAlive, ownerLiveness } from '../../system/proc.js';
import { addressesByMac, addressesOfMac, localRecords } from '../addresses.js';
import { type Context, table } from '../context.js';
import type { Command } from 'commander';
import type { Action } from './shared/action.js';
import { examples } from './shared/help.js';
import { isPrintableText, LEASE_NAME_MAX } from '../../core/quote.js';


export async function macAllocate(flags: { vm?: string }, ctx: Context): Promise<number> {
  let vm: Lease['vm'] = null;
  if (flags.vm !== undefined) {
    if (!isPrintableText(flags.vm, LEASE_NAME_MAX)) {
      throw usageError(`--vm must be 1 to ${LEASE_NAME_MAX} printable characters`);
    }
    vm = UUID_RE.test(flags.vm) ? { uuid: flags.vm.toLowerCase(), name: flags.vm } : { name: flags.vm };
  }
  const store = await ctx.store();
  const [lease] = await store.allocate(ctx.pool, [{ vm, nic: null, owners: [] }]);
  ctx.out(lease!.mac);
  return 0;
}

export async function macRelease(mac: string, flags: { force?: boolean }, ctx: Context): Promise<number> {
  const canonical = formatMac(parseMac(mac));
  const store = await ctx.store();
  const lease = await store.get(canonical);
  const state = lease ? leaseState(lease, ctx.settings.host) : null;
  if ((state === 'live' || state === 'remote') && !flags.force) {
    const where = state === 'remote' ? ` on host ${lease!.host}` : ` (pid ${lease!.owners.map((o) => o.pid).join(',')})`;
    throw new UncloudError(
      'LEASE_LIVE',
      `MAC ${canonical} is in use by running VM ${lease!.vm?.name ?? '?'}${where}; stop the VM instead, or pass --force to free it anyway (the VM keeps using it)`,
    );
  }
  if (!(await store.release(canonical))) {
    throw new UncloudError('NOT_HELD', `MAC ${canonical} is not held in ${store.where}`);
  }
  return 0;
}

/**
 * held: no owner process (until released); live/stale: this host's owners run or are gone;
 * remote: another host's VM, kept alive by that host's etcd lease (its pids mean nothing here).
 */
export function leaseState(lease: Lease, host: string, alive: (o: Owner) => boolean = isOwnerAlive): 'held' | 'live' | 'stale' | 'remote' {
  if (lease.owners.length === 0) return 'held';
  if (lease.host !== host) return 'remote';
  return lease.owners.some(alive) ? 'live' : 'stale';
}

/**
 * Every held MAC, streamed a page at a time as the store reads them (JSON or a table), so its memory does not
 * grow with the pool; damaged records follow the leases, named on stderr as they are met.
 */
export async function macList(flags: { json?: boolean }, ctx: Context): Promise<number> {
  const store = await ctx.store();
  const { conflicts, damaged: badConflicts } = await store.listConflicts();
  const conflictOf = new Map(conflicts.map((c) => [c.mac, c]));
  const liveness = ownerLiveness();
  const stateOf = (l: Lease) => (conflictOf.has(l.mac) ? 'conflict' : leaseState(l, ctx.settings.host, liveness.alive));
  for (const c of conflicts) ctx.err(conflictMessage(c));
  const damaged: DamagedRecord[] = [];
  const noteDamaged = (ds: DamagedRecord[]) => {
    for (const d of ds) ctx.err(`damaged record: ${d.why}`);
    damaged.push(...ds);
  };
  noteDamaged(badConflicts);
  const known = flags.json ? addressesByMac(localRecords(ctx.settings.runDir)) : new Map();
  const json = jsonArrayWriter(ctx.out);
  const text = tableWriter(ctx.out, ['MAC', 'STATE', 'VM', 'NIC', 'HOST', 'PIDS', 'CREATED']);
  for await (const page of store.leasePages({ json: flags.json === true })) {
    liveness.nextBatch();
    noteDamaged(page.damaged);
    if (flags.json) {
      json.write(printRows(page, (l) => ({ state: stateOf(l), addresses: addressesOfMac(l.mac, known), conflict: conflictOf.get(l.mac) })));
    } else {
      text.write(page.leases.map((l) => [l.mac, stateOf(l), l.vm?.name ?? '-', l.nic === null ? '-' : String(l.nic), l.host, l.owners.map((o) => o.pid).join(',') || '-', l.created]));
    }
  }
  if (flags.json) {
    if (damaged.length > 0) json.write([JSON.stringify(damaged.map((d) => ({ key: d.key, state: 'damaged', why: d.why })), null, 2).slice(2, -2)]);
    json.end();
  } else {
    text.write(damaged.map((d) => [basename(d.key).replace(/\.json$/, ''), 'damaged', '-', '-', '-', '-', '-']));
    if (!text.end()) ctx.out('no MAC is held');
  }
  return 0;
}

/** The keys of a lease record as this tool writes it, in its order. */
const LEASE_KEYS = ['version', 'mac', 'vm', 'nic', 'host', 'owners', 'created'] as const;

/** What a row of `mac list --json` adds to its lease, after the lease's own keys. */
export interface RowExtra {
  state: string;
  addresses: object;
  conflict: Conflict | undefined;
}

/** A lease with just the keys this tool writes, in their order. */
function isPlain(l: Lease): boolean {
  let i = 0;
  for (const key in l) if (key !== LEASE_KEYS[i++]) return false;
  return i === LEASE_KEYS.length;
}

/**
 * A lease with its state, addresses and conflict, as `{ ...lease, state, … }` orders them. A plain lease is
 * copied key by key: JSON.stringify of a spread object costs three times as much.
 */
function jsonRow(l: Lease, { state, addresses, conflict }: RowExtra): object {
  const row: Record<string, unknown> = isPlain(l)
    ? { version: l.version, mac: l.mac, vm: l.vm, nic: l.nic, host: l.host, owners: l.owners, created: l.created, state, addresses }
    : { ...l, state, addresses };
  if (conflict) row.conflict = conflict;
  return row;
}

/**
 * Rows per piece of printed JSON: a piece stays well under 128 KiB, so it is no large object (V8 frees those
 * only in a full collection; a page of 1,000 rows printed as one string was one).
 */
const ROWS_PER_PIECE = 100;

/**
 * A page's rows (jsonRow) as JSON.stringify(rows, null, 2) prints them inside the array, in pieces of up to
 * ROWS_PER_PIECE rows (joined with ",\n" they are the page). A plain lease the store gave printed
 * (LeasePage.json, most of a large pool's) is not printed again: its row is that text with the row's own keys
 * printed after it, the same bytes at a fraction of the cost.
 */
export function printRows(page: LeasePage, extraOf: (l: Lease) => RowExtra): string[] {
  const pieces: string[] = [];
  let piece: string[] = [];
  let rows: object[] = [];
  const flushRows = () => {
    if (rows.length > 0) piece.push(JSON.stringify(rows, null, 2).slice(2, -2));
    rows = [];
  };
  page.leases.forEach((l, i) => {
    const extra = extraOf(l);
    const printed = page.json?.[i];
    if (printed && isPlain(l)) {
      flushRows();
      // The lease's text without its closing "\n  }", then the extra keys as they print inside the row.
      piece.push(`${printed.slice(0, -4)},\n${printExtra(extra)}`);
    } else {
      rows.push(jsonRow(l, extra));
    }
    if ((i + 1) % ROWS_PER_PIECE === 0 || i === page.leases.length - 1) {
      flushRows();
      pieces.push(piece.join(',\n'));
      piece = [];
    }
  });
  return pieces;
}

/** A row's extra keys as JSON.stringify([row], null, 2) prints them: from `    "state"` to the row's closing brace. */
function printExtra({ state, addresses, conflict }: RowExtra): string {
  // Most rows: no conflict, and a link-local address alone. Written out, as JSON.stringify would print them.
  let keys = 0;
  for (const _ in addresses) keys++;
  const linkLocal = (addresses as { linkLocal?: unknown }).linkLocal;
  if (conflict === undefined && keys === 1 && typeof linkLocal === 'string') {
    return `    "state": ${JSON.stringify(state)},\n    "addresses": {\n      "linkLocal": ${JSON.stringify(linkLocal)}\n    }\n  }`;
  }
  return JSON.stringify([conflict ? { state, addresses, conflict } : { state, addresses }], null, 2).slice(6, -2);
}

interface StreamWriter<T> {
  write(rows: T): void;
  /** Finishes the output; false when no row was written (a table then printed nothing). */
  end(): boolean;
}

/**
 * A JSON array written as it grows, in pieces (elements as JSON.stringify(rows, null, 2) prints them inside the
 * array, see printRows), byte for byte what JSON.stringify(rows, null, 2) gives.
 */
function jsonArrayWriter(out: (text: string) => void): StreamWriter<string[]> {
  // The last piece waits to know whether a comma follows it.
  let held: string | null = null;
  return {
    write(pieces) {
      for (const piece of pieces) {
        out(held === null ? '[' : `${held},`);
        held = piece;
      }
    },
    end() {
      out(held === null ? '[]' : `${held}\n]`);
      return held !== null;
    },
  };
}

/** A table written a page at a time: columns as wide as the widest cell so far (they only grow). */
function tableWriter(out: (text: string) => void, header: string[]): StreamWriter<string[][]> {
  let widths: number[] | null = null;
  return {
    write(rows) {
      if (rows.length === 0) return;
      const all = widths ? rows : [header, ...rows];
      widths = header.map((_, i) => Math.max(widths?.[i] ?? 0, ...all.map((r) => (r[i] ?? '').length)));
      out(all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths![i]!))).join('  ')).join('\n'));
    },
    end: () => widths !== null,
  };
}

export async function macPool(flags: { json?: boolean }, ctx: Context): Promise<number> {
  const store = await ctx.store();
  const s = await store.status(ctx.pool);
  if (flags.json) {
    ctx.out(JSON.stringify({ ...s, free: s.size - s.held, store: store.where }, null, 2));
    return 0;
  }
  ctx.out(
    table([
      ['prefix', s.prefix],
      ['size', String(s.size)],
      ['held', String(s.held)],
      ['free', String(s.size - s.held)],
      ['cursor', s.cursor],
      ['store', store.where],
      ...Object.entries(s.byHost ?? {}).map(([host, n]) => [`held by ${host}`, String(n)]),
    ]),
  );
  return 0;
}

export function define(program: Command, action: Action): void {
  const mac = program
    .command('mac')
    .description('the MAC pool: allocate, release, list, pool')
    .addHelpText('after', examples('uncloud-vm mac allocate', 'uncloud-vm mac release 42:00:00:00:00:07', 'uncloud-vm mac list', 'uncloud-vm mac pool --json'));
  mac
    .command('allocate')
    .description('lease the next free MAC and print it (held until released)')
    .option('--vm <id>', 'record which VM this MAC is for')
    .addHelpText('after', examples('uncloud-vm mac allocate', 'uncloud-vm mac allocate --vm db1', 'mac=$(uncloud-vm mac allocate)'))
    .action(action((_a, o, ctx) => macAllocate(o, ctx)));
  mac
    .command('release')
    .description('free a leased MAC (refused while a running VM uses it, unless --force)')
    .argument('<mac>', 'the MAC to free')
    .option('--force', 'free it even if a running VM uses it (that VM keeps using it: a conflict gc reports)')
    .addHelpText('after', '\nExamples:\n  uncloud-vm mac release 42:00:00:00:00:07\n  uncloud-vm mac release 42:00:00:00:00:07 --force   # a damaged or orphaned lease')
    .action(action((a, o, ctx) => macRelease(a[0]!, o as { force?: boolean }, ctx)));
  mac
    .command('list')
    .description('every held MAC, with its VM, host, owner pids and state (held, live, stale, remote, conflict, damaged)')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm mac list', 'uncloud-vm mac list --json'))
    .action(action((_a, o, ctx) => macList(o, ctx)));
  mac
    .command('pool')
    .description('the pool: prefix, size, held, free, cursor')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm mac pool', 'uncloud-vm --prefix 42:10 mac pool --json'))
    .action(action((_a, o, ctx) => macPool(o, ctx)));
}
