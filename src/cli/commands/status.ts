/** `uncloud-vm status <vm>`: a VM's state (from QMP), pid, uptime, NICs; a stopped named VM as remembered. */
import type { Command } from 'commander';
import { UncloudError } from '../../core/errors.js';
import { NAME_RE } from '../../core/vm-identity.js';
import { conflictMessage } from '../../store/policy.js';
import type { Conflict, Store } from '../../store/store.js';
import { addressLines } from '../addresses.js';
import { type Context, table } from '../context.js';
import type { Action } from './shared/action.js';
import { examples } from './shared/help.js';
import { cleanupAfterQemu, findVm } from './shared/vm-target.js';

export function define(program: Command, action: Action): void {
  program
    .command('status')
    .description("a VM's state (from QMP), pid, uptime and NICs")
    .argument('<vm>', 'VM name or UUID')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm status web1', 'uncloud-vm status 8e098bf2-8b96-5c10-a89f-4ac2c1b57a2e --json'))
    .action(action((a, o, ctx) => status(a[0]!, o, ctx)));
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
    // What an interrupted reboot left behind is put right here (and by stop and gc).
    const { settleAbandonedReboot } = await import('../../qemu/power.js');
    const power = { name: rec.name, qmpSocket: rec.qmpSocket, noReboot: rec.noReboot ?? false, rebootMark: vm.files.rebootMark };
    const settled = await settleAbandonedReboot(power, qemuStatus).catch(() => 'none' as const);
    if (settled === 'restored') ctx.err(`note: VM ${rec.name}: an interrupted reboot or reset had left qemu's power-off and reboot actions changed; put back`);
    if (settled === 'ended') {
      ctx.err(`note: VM ${rec.name}: its guest had powered off, but an interrupted reboot had kept qemu paused; qemu is told to quit, as a power-off ends a VM`);
      const { waitUntil } = await import('../../qemu/poll.js');
      const { isOwnerAlive } = await import('../../system/proc.js');
      await waitUntil(() => !isOwnerAlive(qemu), 5000);
      await cleanupAfterQemu(rec.name, ctx);
      return status(target, flags, ctx);
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
  const { conflicts } = await store.listConflicts();
  return conflicts.filter((c) => macs.includes(c.mac));
}
