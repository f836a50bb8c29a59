/** `stop`, `status` and the unit hooks: one VM, found by name or UUID through its run record. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UncloudError, printable } from '../../core/errors.js';
import { formatMac, parseMac } from '../../core/mac.js';
import { NAME_RE, UUID_RE, vmRunFiles } from '../../core/vm-spec.js';
import type { Owner } from '../../core/owner.js';
import { isOwnerAlive, ownerOf } from '../../system/proc.js';
import { readRecord, type VmRecord, writeRecord } from '../../system/run-dir.js';
import { addressLines } from '../addresses.js';
import { type Context, table } from '../context.js';
import { parseTimeout } from './start.js';


function checkTarget(target: string): void {
  if (!NAME_RE.test(target) && !UUID_RE.test(target)) {
    throw new UncloudError('USAGE', `invalid VM '${printable(target)}': expected a VM name or UUID`, 2);
  }
}

/** The run record of a VM by name or UUID, or null when no such VM has a run dir. */
export function findVm(target: string, runDir: string): VmRecord | null {
  checkTarget(target);
  if (NAME_RE.test(target)) {
    const rec = readRecord(vmRunFiles(runDir, target).record);
    if (rec) return rec;
  }
  if (UUID_RE.test(target)) {
    let entries: string[] = [];
    try {
      entries = readdirSync(runDir);
    } catch {
      return null;
    }
    for (const e of entries) {
      const rec = readRecord(join(runDir, e, 'vm.json'));
      if (rec?.uuid === target.toLowerCase()) return rec;
    }
  }
  return null;
}

/** qemu of a VM: from the record, else from its pidfile (a unit VM between ExecStart and ExecStartPost). */
function qemuOf(rec: VmRecord, runDir: string): Owner | null {
  if (rec.qemu) return rec.qemu;
  try {
    const pid = Number(readFileSync(vmRunFiles(runDir, rec.name).pidfile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? ownerOf(pid) : null;
  } catch {
    return null;
  }
}

export async function stop(target: string, flags: { timeout?: string; force?: boolean }, ctx: Context): Promise<number> {
  const timeoutS = parseTimeout(flags.timeout ?? '60', '--timeout');
  const rec = findVm(target, ctx.settings.runDir);
  const qemu = rec ? qemuOf(rec, ctx.settings.runDir) : null;
  if (!rec || !qemu || !isOwnerAlive(qemu)) {
    if (rec) await cleanupIfOrphaned(rec, ctx);
    throw new UncloudError('NOT_RUNNING', `VM ${target} is not running (no live qemu in ${ctx.settings.runDir})`);
  }
  const { stopVm } = await import('../../qemu/stop.js');
  const r = await stopVm(
    { name: rec.name, qmpSocket: rec.qmpSocket, qemu },
    { timeoutMs: timeoutS * 1000, force: flags.force ?? false, progress: ctx.err },
  );
  const how = { 'not-running': 'was not running', 'powered-off': 'powered off', quit: 'quit', killed: 'was killed' }[r.outcome];
  ctx.err(`VM ${rec.name} ${how} after ${(r.ms / 1000).toFixed(1)} s`);
  await cleanupIfOrphaned(rec, ctx);
  return 0;
}

/** After qemu is gone: a live launcher gives everything back itself; otherwise we do. */
async function cleanupIfOrphaned(rec: VmRecord, ctx: Context): Promise<void> {
  const launcher = rec.launcher;
  if (launcher && isOwnerAlive(launcher)) {
    const deadline = Date.now() + 10_000;
    while (isOwnerAlive(launcher) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (!isOwnerAlive(launcher)) return;
  }
  const { releaseVm } = await import('../../qemu/launcher.js');
  await releaseVm(await ctx.store(), ctx.settings.runDir, rec.name);
}

export async function status(target: string, flags: { json?: boolean }, ctx: Context): Promise<number> {
  const rec = findVm(target, ctx.settings.runDir);
  const store = await ctx.store();
  if (!rec) {
    const known = NAME_RE.test(target) ? await store.getIdentity(target) : null;
    if (!known) throw new UncloudError('NO_VM', `no VM named ${target} is running or known to ${store.where}`);
    const out = { name: known.name, uuid: known.uuid, state: 'stopped', nics: known.macs.map((mac, index) => ({ index, mac })) };
    ctx.out(flags.json ? JSON.stringify(out, null, 2) : table([['name', out.name], ['uuid', out.uuid], ['state', 'stopped'], ...out.nics.map((n) => [`nic${n.index}`, `${n.mac} (last used)`])]));
    return 0;
  }
  const qemu = qemuOf(rec, ctx.settings.runDir);
  const alive = qemu !== null && isOwnerAlive(qemu);
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
    state: alive ? 'running' : 'stale',
    qemuStatus,
    pid: qemu?.pid ?? null,
    launcherPid: rec.launcher && isOwnerAlive(rec.launcher) ? rec.launcher.pid : null,
    started: rec.started,
    uptimeS: alive ? Math.round((Date.now() - Date.parse(rec.started)) / 1000) : null,
    nics: rec.nics,
    qmpSocket: rec.qmpSocket,
    serialLog: rec.serialLog,
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
      ['serial log', out.serialLog],
    ]),
  );
  return 0;
}

// --- hooks: what generated units and detached VMs run ---

export async function hookAdopt(name: string, ctx: Context): Promise<number> {
  const files = vmRunFiles(ctx.settings.runDir, name);
  const rec = findVm(name, ctx.settings.runDir);
  if (!rec) throw new UncloudError('NO_VM', `VM ${name} has no run record in ${ctx.settings.runDir}`);
  const deadline = Date.now() + 30_000;
  let qemu: Owner | null = null;
  while (!qemu) {
    qemu = existsSync(files.pidfile) ? qemuOf(rec, ctx.settings.runDir) : null;
    if (qemu) break;
    if (Date.now() > deadline) throw new UncloudError('QEMU_TIMEOUT', `qemu of VM ${name} wrote no pidfile within 30 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // With etcd, qemu's leases must hang on the host agent's lease: this process ends right after.
  const store = await ctx.store({ requireAgent: true });
  await store.setOwners(
    rec.nics.map((n) => n.mac),
    [qemu],
  );
  writeRecord(files, { ...rec, qemu, launcher: null });
  return 0;
}

export async function hookRelease(name: string, mac: string, ctx: Context): Promise<number> {
  checkTarget(name);
  await (await ctx.store()).release(formatMac(parseMac(mac)), name);
  return 0;
}

export async function hookCleanup(name: string, ctx: Context): Promise<number> {
  checkTarget(name);
  const { releaseVm } = await import('../../qemu/launcher.js');
  const freed = await releaseVm(await ctx.store(), ctx.settings.runDir, name);
  for (const l of freed) ctx.err(`released ${l.mac} (VM ${name} nic${l.nic})`);
  return 0;
}
