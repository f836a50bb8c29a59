/**
 * Reconcile what is recorded against what is really there, level-triggered: running it twice, or at any
 * moment, only moves the state closer to the truth. The truth is the running qemu (system/vm-state.ts):
 *
 * - a VM whose qemu runs keeps its leases; they are owned by that qemu (adopted if the record or the lease
 *   missed it), re-created if they vanished, and a MAC another VM holds meanwhile is a conflict, reported;
 * - a VM with no qemu and no launcher is dead: its leases, taps, guard rules and run dir are removed;
 * - leases whose owners are all gone are freed (store.gc), except those of VMs that still run;
 * - guard rules whose tap is gone, and taps nobody holds open, are removed unless a live VM reserved them.
 * Damaged records are reported and skipped, never deleted, and never stop the work on the others.
 */
import { existsSync } from 'node:fs';
import { UncloudError } from '../core/errors.js';
import type { Pool } from '../core/mac.js';
import type { Owner } from '../core/owner.js';
import { conflictMessage } from '../store/policy.js';
import type { Conflict, DamagedRecord, Lease, Store } from '../store/store.js';
import { listGuardedTaps, listTaps, removeNicGuard, removeNicLeftovers, removeTap } from '../system/nic-guard.js';
import { tapsHeldOpen } from '../system/proc.js';
import { oldStagingDirs, removeDir, type VmRecord, withRunDirLock, writeRecord } from '../system/run-dir.js';
import { type ObservedVm, observeAll, observeVm } from '../system/vm-state.js';
import { waitUntil } from './poll.js';

export interface ReconcileReport {
  /** Leases whose owner was set to the VM's live qemu. */
  adopted: Lease[];
  /** Leases of running VMs that had vanished and were created again. */
  recreated: Lease[];
  conflicts: Conflict[];
  /** Leases freed: of dead VMs, or whose owners are gone. */
  freed: Lease[];
  /** Run dirs removed (VM names, or paths of staging dirs). */
  removedDirs: string[];
  removedGuards: string[];
  removedTaps: string[];
  damaged: DamagedRecord[];
  /** VMs whose guest had powered off while an interrupted reboot kept qemu paused: ended now. */
  endedVms: string[];
  /** VMs whose qemu actions an interrupted reboot or reset had left changed: put back. */
  restoredActions: string[];
  /** Dead VMs whose leases the store would not take back: their run dirs stay for the next gc. */
  failed: string[];
}

export interface ReconcileDeps {
  store: Store;
  pool: Pool;
  runDir: string;
  host: string;
  /** Re-create vanished leases of running VMs here (file store); on etcd the host agent does it. */
  recreate: boolean;
}

const sameOwner = (a: Owner, b: Owner): boolean => a.pid === b.pid && a.startTime === b.startTime;

/** Leases of a VM that runs: owned by its qemu, present, and not silently held by another. */
async function assertRunning(vm: ObservedVm, deps: ReconcileDeps, report: ReconcileReport): Promise<void> {
  const rec = vm.record!;
  const qemu = vm.qemu!;
  if (!rec.qemu || !sameOwner(rec.qemu, qemu)) writeRecord(vm.files, { ...rec, qemu });
  for (const [i, nic] of rec.nics.entries()) {
    const want = leasesOf(vm, deps.host)[i]!;
    const held = await deps.store.get(nic.mac);
    if (held && held.vm?.uuid === rec.uuid) {
      if (!held.owners.some((o) => sameOwner(o, qemu))) {
        await deps.store.setOwners([nic.mac], [qemu]);
        report.adopted.push(held);
      }
      continue;
    }
    if (!held && deps.recreate) {
      try {
        await deps.store.allocate(deps.pool, [{ vm: want.vm, nic: nic.index, owners: [qemu], mac: nic.mac }]);
        report.recreated.push(want);
        continue;
      } catch (err) {
        if (!(err instanceof UncloudError) || err.code !== 'MAC_HELD') throw err;
      }
    }
    if (!held && !deps.recreate) continue;
    const conflict: Conflict = { version: 1, mac: nic.mac, host: deps.host, vm: want.vm!, holder: await deps.store.get(nic.mac), detected: new Date().toISOString() };
    await deps.store.setConflict(nic.mac, conflict);
    report.conflicts.push(conflict);
  }
}

/**
 * What a VM with no live qemu held: its leases (the ones still its own on this host), taps and guard rules.
 * The caller has made sure no qemu of it runs (observed dead, or it awaited qemu's exit itself). A lease the
 * store would not take back (unreachable, disk full) is a GIVE_BACK_FAILED error, thrown after everything
 * else was given back; a damaged lease record is left to the operator (gc names it), not a failure here.
 * `ran`: whether the VM's qemu ran (the error says the VM has ended) or the start failed before it did.
 */
export async function giveBackHeld(store: Store, host: string, rec: VmRecord, ran = true): Promise<Lease[]> {
  const freed: Lease[] = [];
  const failed: string[] = [];
  for (const nic of rec.nics) {
    try {
      // Only this VM's lease on this host: after a forced release the MAC may be another VM's now.
      const held = await store.get(nic.mac);
      if (held?.vm?.uuid !== rec.uuid || held.host !== host) continue;
      if (await store.release(nic.mac, rec.uuid)) freed.push(held);
    } catch (err) {
      if (err instanceof UncloudError && (err.code === 'STATE_DAMAGED' || err.code === 'STATE_VERSION')) continue;
      failed.push(`${nic.mac} (${(err as Error).message})`);
    }
  }
  removeNicLeftovers(rec.taps);
  if (failed.length > 0) {
    const what = ran ? `VM ${rec.name} has ended, but` : `VM ${rec.name} was not started, and`;
    throw new UncloudError('GIVE_BACK_FAILED', `${what} the store did not take back ${failed.join('; ')}; its run dir stays, and 'uncloud-vm gc' gives it back once the store answers`);
  }
  return freed;
}

/** giveBackHeld, then the run dir; the run dir stays when a lease could not be given back (gc tries again). */
export async function giveBackVm(store: Store, host: string, vm: Pick<ObservedVm, 'files' | 'record'>, ran = true): Promise<Lease[]> {
  const freed = vm.record ? await giveBackHeld(store, host, vm.record, ran) : [];
  removeDir(vm.files.dir);
  return freed;
}

/**
 * On a path that is already failing: give back what the VM took; a give-back failure is told, not thrown over
 * the first. `ran`: qemu ran (past its gate) before the failure; by default the start failed before it did.
 */
export async function giveBackAfterFailure(store: Store, host: string, vm: Pick<ObservedVm, 'files' | 'record'>, note?: (msg: string) => void, ran = false): Promise<void> {
  await giveBackVm(store, host, vm, ran).catch((err: Error) => note?.(err.message));
}

/**
 * Clean up after one VM whose qemu is gone (stop, a unit's ExecStopPost): under the claim lock, and only
 * if no qemu of it runs. Returns what was freed, or null when the VM turned out to be running.
 * `starting` VMs are left to their launcher unless `evenIfStarting` (systemd has ended the unit's processes).
 */
export async function cleanupVm(store: Store, runDir: string, host: string, name: string, evenIfStarting = false): Promise<Lease[] | null> {
  return withRunDirLock(runDir, async () => {
    const vm = observeVm(runDir, name);
    if (vm.phase === 'running' || (vm.phase === 'starting' && !evenIfStarting && vm.launcher)) return null;
    return giveBackVm(store, host, vm);
  });
}

export async function reconcile(deps: ReconcileDeps): Promise<ReconcileReport> {
  const report: ReconcileReport = { adopted: [], recreated: [], conflicts: [], freed: [], removedDirs: [], removedGuards: [], removedTaps: [], damaged: [], endedVms: [], restoredActions: [], failed: [] };
  await settleAbandonedReboots(deps.runDir, report);
  const vms = observeAll(deps.runDir);
  const live = vms.filter((v) => v.phase !== 'dead');
  for (const vm of vms) {
    // A running VM's damaged record stays (its qemu runs); a dead one's goes with its run dir, said below.
    if (vm.damaged && vm.phase !== 'dead') report.damaged.push({ key: vm.files.record, why: vm.damaged });
    if (vm.phase === 'running' && vm.record) await assertRunning(vm, deps, report);
  }
  // Leases whose recorded owners are gone, but whose VM's qemu still runs (or is about to), stay.
  const liveUuids = new Set(live.flatMap((v) => (v.record ? [v.record.uuid] : [])));
  report.freed.push(...(await deps.store.gc((l) => l.vm?.uuid !== undefined && liveUuids.has(l.vm.uuid))));

  // Dead VMs: re-checked under the claim lock, so a VM claimed meanwhile under the same name is left alone.
  for (const vm of vms.filter((v) => v.phase === 'dead')) {
    await withRunDirLock(deps.runDir, async () => {
      const now = observeVm(deps.runDir, vm.name);
      // Gone meanwhile (another gc, a stop's cleanup took it): not this gc's to report as removed.
      if (now.phase !== 'dead' || !existsSync(now.files.dir)) return;
      // A record that is not this dir's own (a copy of another VM's run dir) or names a VM whose qemu
      // runs elsewhere under this run dir gives nothing back: its leases and taps are that VM's.
      const foreign = now.record !== null && (now.record.name !== vm.name || liveUuids.has(now.record.uuid));
      if (foreign) removeDir(now.files.dir);
      else {
        try {
          report.freed.push(...(await giveBackVm(deps.store, deps.host, now)));
        } catch (err) {
          if (!(err instanceof UncloudError) || err.code !== 'GIVE_BACK_FAILED') throw err;
          report.failed.push(err.message);
          return;
        }
      }
      const why = now.damaged ? ` (its record ${now.files.record} was damaged: ${now.damaged})` : foreign ? ` (a copy of VM ${now.record!.name}'s run dir; nothing of that VM was touched)` : '';
      report.removedDirs.push(`${vm.name}${why}`);
    });
  }
  // Under the claim lock every staging dir is a killed claim's, however young: one gc leaves none.
  if (oldStagingDirs(deps.runDir, Date.now(), 0).length > 0) {
    await withRunDirLock(deps.runDir, () => {
      for (const dir of oldStagingDirs(deps.runDir, Date.now(), 0)) {
        removeDir(dir);
        report.removedDirs.push(dir);
      }
    });
  }

  // Host-side leftovers: what no live VM reserved and nothing holds.
  const reserved = new Set(observeAll(deps.runDir).filter((v) => v.phase !== 'dead').flatMap((v) => v.record?.taps ?? []));
  const existing = new Set(listTaps());
  const open = tapsHeldOpen();
  for (const tap of existing) {
    if (reserved.has(tap) || open.has(tap)) continue;
    removeTap(tap);
    existing.delete(tap);
    report.removedTaps.push(tap);
  }
  for (const tap of listGuardedTaps()) {
    if (reserved.has(tap) || existing.has(tap)) continue;
    removeNicGuard(tap);
    report.removedGuards.push(tap);
  }
  // This host's records only (through the store's host index): gc costs what this host holds, not the pool.
  const listed = await deps.store.listHost();
  report.damaged.push(...listed.damaged);
  // Conflicts this host recorded that no longer stand (the VM is gone, or the MAC is its own again).
  for (const c of listed.conflicts.filter((x) => x.host === deps.host)) {
    if (report.conflicts.some((x) => x.mac === c.mac)) continue;
    const running = vms.some((v) => v.record?.uuid === c.vm.uuid && v.phase === 'running');
    if (!running || (await deps.store.get(c.mac))?.vm?.uuid === c.vm.uuid) await deps.store.setConflict(c.mac, null);
  }
  return report;
}

export { conflictMessage };

/** Running VMs whose reboot was killed (a mark its owner left): qemu's actions put back, or the VM ended. */
async function settleAbandonedReboots(runDir: string, report: ReconcileReport): Promise<void> {
  const marked = observeAll(runDir).filter((v) => v.phase === 'running' && v.record && existsSync(v.files.rebootMark));
  if (marked.length === 0) return;
  const { settleAbandonedReboot } = await import('./power.js');
  for (const vm of marked) {
    const rec = vm.record!;
    const how = await settleAbandonedReboot({ name: vm.name, qmpSocket: rec.qmpSocket, noReboot: rec.noReboot ?? false, rebootMark: vm.files.rebootMark }).catch(() => 'none' as const);
    if (how === 'restored') report.restoredActions.push(vm.name);
    if (how === 'ended') {
      report.endedVms.push(vm.name);
      // Its qemu ends in a moment; then (and once a launcher has given back what it holds) it is a dead VM.
      await waitUntil(() => observeVm(runDir, vm.name).phase === 'dead' || !existsSync(vm.files.dir), 10_000);
    }
  }
}

/** The leases VMs running on this host use, as the store should hold them (the host agent asserts these). */
export function runningLeases(runDir: string, host: string): Lease[] {
  return observeAll(runDir)
    .filter((v) => v.phase === 'running')
    .flatMap((v) => leasesOf(v, host));
}

/** The leases a running VM's NICs should have: its MACs, owned by its live qemu. */
function leasesOf(vm: ObservedVm, host: string): Lease[] {
  const rec = vm.record;
  if (!rec || !vm.qemu) return [];
  const vmRef = { uuid: rec.uuid, name: rec.name };
  return rec.nics.map((n) => ({ version: 1, mac: n.mac, vm: vmRef, nic: n.index, host, owners: [vm.qemu!], created: rec.started }));
}
