/**
 * `uncloud-vm list`: this host's VMs (read through the store's host index, so it costs what this host holds,
 * not the pool) and the named VMs the store remembers, wherever they run.
 */
import type { Lease, Store, VmIdentity } from '../../store/store.js';
import type { NicAddresses } from '../../core/nic-allowed.js';
import { addressesByMac, addressesOfMac, localRecords } from '../addresses.js';
import { type Context, table } from '../context.js';
import { leaseState } from './mac.js';
import type { Command } from 'commander';
import type { Action } from './shared/action.js';
import { examples } from './shared/help.js';

export interface VmRow {
  name: string;
  uuid: string | null;
  state: 'running' | 'stopped' | 'stale' | 'held';
  pids: number[];
  nics: { nic: number | null; mac: string; host: string; addresses?: NicAddresses | { linkLocal: string } }[];
}


/** VMs from their leases, plus named VMs that hold nothing now (stopped). */
export function groupByVm(leases: Lease[], identities: VmIdentity[], host: string): VmRow[] {
  const rows = new Map<string, VmRow>();
  for (const l of leases) {
    if (!l.vm) continue;
    const key = l.vm.uuid ?? l.vm.name;
    let row = rows.get(key);
    if (!row) {
      row = { name: l.vm.name, uuid: l.vm.uuid ?? null, state: 'held', pids: [], nics: [] };
      rows.set(key, row);
    }
    const st = leaseState(l, host);
    if (st === 'live' || st === 'remote') row.state = 'running';
    else if (st === 'stale' && row.state !== 'running') row.state = 'stale';
    for (const o of l.owners) if (!row.pids.includes(o.pid)) row.pids.push(o.pid);
    row.nics.push({ nic: l.nic, mac: l.mac, host: l.host });
  }
  for (const id of identities) {
    if (rows.has(id.uuid)) continue;
    rows.set(id.uuid, { name: id.name, uuid: id.uuid, state: 'stopped', pids: [], nics: id.macs.map((mac, nic) => ({ nic, mac, host: '-' })) });
  }
  return [...rows.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** The leases a named VM holds that are not among this host's (it runs elsewhere, or holds them there). */
async function heldElsewhere(store: Store, identities: VmIdentity[], here: Lease[]): Promise<Lease[]> {
  const known = new Set(here.flatMap((l) => (l.vm?.uuid ? [l.vm.uuid] : [])));
  const wanted = identities.filter((id) => !known.has(id.uuid));
  const found = await Promise.all(wanted.map(async (id) => (await Promise.all(id.macs.map((m) => store.get(m)))).filter((l) => l?.vm?.uuid === id.uuid)));
  return found.flat() as Lease[];
}

export async function list(flags: { json?: boolean }, ctx: Context): Promise<number> {
  const store = await ctx.store();
  const listed = await store.listHost();
  const { identities, damaged: damagedIdentities } = await store.listIdentities();
  const leases = [...listed.leases, ...(await heldElsewhere(store, identities, listed.leases))];
  const vms = groupByVm(leases, identities, ctx.settings.host);
  for (const d of [...listed.damaged, ...damagedIdentities]) ctx.err(`damaged record skipped: ${d.why}`);
  if (flags.json) {
    const known = addressesByMac(localRecords(ctx.settings.runDir));
    for (const vm of vms) for (const n of vm.nics) n.addresses = addressesOfMac(n.mac, known);
    ctx.out(JSON.stringify(vms, null, 2));
    return 0;
  }
  if (vms.length === 0) {
    ctx.out('no VM is known');
    return 0;
  }
  const rows = [['NAME', 'STATE', 'HOST', 'PIDS', 'MACS', 'UUID']];
  for (const vm of vms) {
    const hosts = [...new Set(vm.nics.map((n) => n.host))].join(',');
    rows.push([vm.name, vm.state, hosts, vm.pids.join(',') || '-', vm.nics.map((n) => n.mac).join(','), vm.uuid ?? '-']);
  }
  ctx.out(table(rows));
  return 0;
}

export function define(program: Command, action: Action): void {
  program
    .command('list')
    .description('VMs: running, stopped (named, holding nothing), stale (owner gone) or held (manual lease)')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm list', 'uncloud-vm list --json'))
    .action(action((_a, o, ctx) => list(o, ctx)));
}
