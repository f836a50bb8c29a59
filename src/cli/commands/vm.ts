/** `stop`, `status` and the unit hooks: one VM, found by name or UUID through its run record. */
import { UncloudError, printable } from '../../core/errors.js';
import { formatMac, parseMac } from '../../core/mac.js';
import { NAME_RE, UUID_RE } from '../../core/vm-identity.js';
import { DEFAULT_STOP_TIMEOUT_S } from '../../core/defaults.js';
import { conflictMessage } from '../../store/policy.js';
import type { Conflict, Store } from '../../store/store.js';
import { writeRecord } from '../../system/run-dir.js';
import { type ObservedVm, observeAll, observeVm } from '../../system/vm-state.js';
import { addressLines } from '../addresses.js';
import { type Context, table } from '../context.js';
import { parseTimeout } from './start.js';


function checkTarget(target: string): void {
  if (!NAME_RE.test(target) && !UUID_RE.test(target)) {
    throw new UncloudError('USAGE', `invalid VM '${printable(target)}': expected a VM name or UUID`, 2);
  }
}

/** A VM by name or UUID as it really is (record + verified processes), or null when it has no run dir. */
export function findVm(target: string, runDir: string): ObservedVm | null {
  checkTarget(target);
  if (NAME_RE.test(target)) {
    const vm = observeVm(runDir, target);
    // A damaged record does not hide a running qemu (found through its pidfile): it can still be stopped.
    if (vm.record || vm.qemu) return vm;
  }
  if (UUID_RE.test(target)) {
    const uuid = target.toLowerCase();
    return observeAll(runDir).find((v) => v.record?.uuid === uuid) ?? null;
  }
  return null;
}

export async function stop(target: string, flags: { timeout?: string; force?: boolean }, ctx: Context): Promise<number> {
  const timeoutS = parseTimeout(flags.timeout ?? String(DEFAULT_STOP_TIMEOUT_S), '--timeout');
  const vm = findVm(target, ctx.settings.runDir);
  if (!vm || !vm.qemu) {
    if (vm) await cleanupAfterQemu(vm.name, ctx);
    throw new UncloudError('NOT_RUNNING', `VM ${target} is not running (no live qemu in ${ctx.settings.runDir})`);
  }
  const { stopVm } = await import('../../qemu/stop.js');
  const r = await stopVm(
    { name: vm.name, qmpSocket: vm.files.qmpSocket, qemu: vm.qemu },
    { timeoutMs: timeoutS * 1000, force: flags.force ?? false, progress: ctx.err },
  );
  const { stopOutcomeText } = await import('../../qemu/stop.js');
  ctx.err(`VM ${vm.name} ${stopOutcomeText(r)} after ${(r.ms / 1000).toFixed(1)} s`);
  await cleanupAfterQemu(vm.name, ctx);
  return 0;
}

/** After qemu is gone: a live launcher gives everything back itself (waited for briefly); otherwise we do. */
async function cleanupAfterQemu(name: string, ctx: Context): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (observeVm(ctx.settings.runDir, name).launcher && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const { cleanupVm } = await import('../../qemu/reconcile.js');
  await cleanupVm(await ctx.store(), ctx.settings.runDir, ctx.settings.host, name, true);
}

export async function status(target: string, flags: { json?: boolean }, ctx: Context): Promise<number> {
  const vm = findVm(target, ctx.settings.runDir);
  const store = await ctx.store();
  if (!vm) {
    const known = NAME_RE.test(target) ? await store.getIdentity(target) : null;
    if (!known) throw new UncloudError('NO_VM', `no VM named ${target} is running or known to ${store.where}`);
    const out = { name: known.name, uuid: known.uuid, state: 'stopped', nics: known.macs.map((mac, index) => ({ index, mac })) };
    ctx.out(flags.json ? JSON.stringify(out, null, 2) : table([['name', out.name], ['uuid', out.uuid], ['state', 'stopped'], ...out.nics.map((n) => [`nic${n.index}`, `${n.mac} (last used)`])]));
    return 0;
  }
  if (!vm.record) {
    const out = { name: vm.name, state: 'running', pid: vm.qemu?.pid ?? null, damagedRecord: { path: vm.files.record, why: vm.damaged } };
    ctx.out(flags.json ? JSON.stringify(out, null, 2) : table([['name', out.name], ['state', 'running (its record is damaged)'], ['pid', String(out.pid)], ['record', `${out.damagedRecord.path}: ${out.damagedRecord.why}`]]));
    ctx.err(`VM ${vm.name}: its record ${vm.files.record} is damaged (${vm.damaged}); stop and start it to write a new one`);
    return 0;
  }
  const rec = vm.record;
  const qemu = vm.qemu;
  const alive = qemu !== null;
  let qemuStatus: string | null = null;
  if (alive) {
    const { QmpClient } = await import('../../qemu/qmp.js');
    try {
      const qmp = await QmpClient.connect(rec.qmpSocket, 3000);
      try {
        qemuStatus = ((await qmp.execute('query-status')) as { status?: string }).status ?? null;
      } finally {
        qmp.close();
      }
    } catch (err) {
      qemuStatus = `unknown (${(err as Error).message})`;
    }
  }
  const out = {
    name: rec.name,
    uuid: rec.uuid,
    state: alive ? (qemuStatus === 'paused' ? 'paused' : 'running') : vm.phase === 'starting' ? 'starting' : 'stale',
    qemuStatus,
    pid: qemu?.pid ?? null,
    launcherPid: vm.launcher?.pid ?? null,
    started: rec.started,
    uptimeS: alive ? Math.round((Date.now() - Date.parse(rec.started)) / 1000) : null,
    nics: rec.nics,
    // The QMP socket left for the operator (uncloud-vm keeps one of its own).
    qmpSocket: rec.operatorQmpSocket ?? rec.qmpSocket,
    consoleSocket: rec.consoleSocket ?? null,
    serialLog: rec.serialLog,
    conflicts: await conflictsOf(rec.nics.map((n) => n.mac), store),
  };
  if (flags.json) {
    ctx.out(JSON.stringify(out, null, 2));
    return 0;
  }
  ctx.out(
    table([
      ['name', out.name],
      ['uuid', out.uuid],
      ['state', `${out.state}${qemuStatus ? ` (qemu: ${qemuStatus})` : ''}`],
      ['pid', String(out.pid ?? '-')],
      ['uptime', out.uptimeS === null ? '-' : `${out.uptimeS} s`],
      ...rec.nics.flatMap((n) => [
        [`nic${n.index}`, `${n.mac} on ${n.bridge} (tap ${n.tap})`],
        ...(n.addresses ? addressLines(n.addresses).map(([k, v]) => [`  ${k}`, v]) : []),
      ]),
      ['console', out.consoleSocket ? `uncloud-vm console ${out.name}` : 'on the terminal of its launcher'],
      ['serial log', out.serialLog],
      ['qmp socket', out.qmpSocket],
    ]),
  );
  for (const c of out.conflicts) ctx.err(conflictMessage(c));
  return 0;
}

/** Conflicts recorded on these MACs (a running VM using a MAC that another holds). */
async function conflictsOf(macs: string[], store: Store): Promise<Conflict[]> {
  if (macs.length === 0) return [];
  const { conflicts } = await store.list();
  return conflicts.filter((c) => macs.includes(c.mac));
}

// --- hooks: what generated units and detached VMs run ---

export async function hookAdopt(name: string, ctx: Context): Promise<number> {
  checkTarget(name);
  const deadline = Date.now() + 30_000;
  let vm = observeVm(ctx.settings.runDir, name);
  if (!vm.record) throw new UncloudError('NO_VM', `VM ${name} has no run record in ${ctx.settings.runDir}`);
  while (!vm.qemu) {
    if (Date.now() > deadline) throw new UncloudError('QEMU_TIMEOUT', `qemu of VM ${name} wrote no pidfile within 30 s`);
    await new Promise((r) => setTimeout(r, 50));
    vm = observeVm(ctx.settings.runDir, name);
  }
  // With etcd, qemu's leases must hang on the host agent's lease: this process ends right after.
  const store = await ctx.store({ requireAgent: true });
  const rec = vm.record!;
  await store.setOwners(
    rec.nics.map((n) => n.mac),
    [vm.qemu],
  );
  writeRecord(vm.files, { ...rec, qemu: vm.qemu, launcher: null });
  // qemu is up: remember the unit's VM (a start that fails before this changes nothing).
  await store.putIdentity({ version: 1, name: rec.name, uuid: rec.uuid, macs: rec.nics.map((n) => n.mac), updated: new Date().toISOString() });
  return 0;
}

export async function hookRelease(name: string, mac: string, ctx: Context): Promise<number> {
  checkTarget(name);
  await (await ctx.store()).release(formatMac(parseMac(mac)), name);
  return 0;
}

/** ExecStopPost: systemd has ended the unit's processes; give back what the VM held, unless a qemu of it still runs. */
export async function hookCleanup(name: string, ctx: Context): Promise<number> {
  checkTarget(name);
  const { cleanupVm } = await import('../../qemu/reconcile.js');
  const freed = await cleanupVm(await ctx.store(), ctx.settings.runDir, ctx.settings.host, name, true);
  if (freed === null) ctx.err(`VM ${name} still has a live qemu; left it alone`);
  for (const l of freed ?? []) ctx.err(`released ${l.mac} (VM ${name} nic${l.nic})`);
  return 0;
}
