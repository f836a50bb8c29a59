/**
 * Claiming a VM on this host: under the run dir's claim lock, refuse a name or UUID a live VM already
 * has, clear a dead VM's leftovers, pick tap names no live VM uses, and create the run dir with its record.
 * Two launchers of one VM: exactly one wins; the other is told the VM is already starting or running.
 */
import { existsSync } from 'node:fs';
import { UncloudError } from '../core/errors.js';
import type { Owner } from '../core/owner.js';
import { freeTapNames } from '../core/tap-name.js';
import type { VmRunFiles } from '../core/vm-files.js';
import { listTaps, removeStaleGuard } from './nic-guard.js';
import { createRunDir, removeDir, type VmRecord, withRunDirLock } from './run-dir.js';
import { observeAll, observeVm, type ObservedVm } from './vm-state.js';

export interface ClaimRequest {
  name: string;
  uuid: string;
  nicIndices: number[];
  /** The bridges of the NICs, recorded at once so that `network rm` refuses while this VM starts. */
  bridges: string[];
  launcher: Owner;
  managedBy: VmRecord['managedBy'];
  files: VmRunFiles;
  qmpSocket: string;
  serialLog: string;
}

function busy(vm: ObservedVm, what: string): UncloudError {
  const pid = vm.qemu?.pid ?? vm.launcher?.pid;
  const state = vm.phase === 'running' ? 'running' : 'starting';
  return new UncloudError('VM_RUNNING', `${what} is already ${state}${pid ? ` (pid ${pid})` : ''}; stop it first or pick another --name`);
}

/**
 * Returns the record written; `dead` is the leftover of an earlier run of this name that was cleared;
 * `macsInUse` maps each MAC of the other VMs running (or starting) here to that VM's name.
 */
export async function claimVm(
  runDir: string,
  req: ClaimRequest,
): Promise<{ record: VmRecord; dead: ObservedVm | null; macsInUse: Map<string, string> }> {
  return withRunDirLock(runDir, () => {
    const mine = observeVm(runDir, req.name);
    const exists = existsSync(mine.files.dir);
    if (exists && mine.phase !== 'dead') throw busy(mine, `VM ${req.name}`);
    const others = observeAll(runDir).filter((v) => v.name !== req.name && v.phase !== 'dead');
    const sameUuid = others.find((v) => v.record?.uuid === req.uuid);
    if (sameUuid) {
      throw new UncloudError('UUID_IN_USE', `UUID ${req.uuid} is already used by VM ${sameUuid.name} (${sameUuid.phase}); pick another --uuid`, 1);
    }
    const reserved = new Set([...others.flatMap((v) => v.record?.taps ?? []), ...listTaps()]);
    const taps = freeTapNames(req.uuid, req.nicIndices, (t) => reserved.has(t));
    // Rules left by an earlier qemu that was killed: its tap is gone, but a stale rule would drop the new guest's
    // frames. Looked for only where ifup marked a guard, or the dead run of this VM had the tap.
    const deadTaps = new Set(exists ? (mine.record?.taps ?? []) : []);
    for (const tap of taps) removeStaleGuard(runDir, tap, deadTaps.has(tap));
    let dead: ObservedVm | null = null;
    if (exists) {
      dead = mine;
      removeDir(mine.files.dir);
    }
    const record: VmRecord = {
      version: 1,
      name: req.name,
      uuid: req.uuid,
      launcher: req.launcher,
      qemu: null,
      managedBy: req.managedBy,
      taps,
      bridges: [...new Set(req.bridges)],
      nics: [],
      started: new Date().toISOString(),
      qmpSocket: req.qmpSocket,
      serialLog: req.serialLog,
    };
    createRunDir(runDir, req.files, record);
    const macsInUse = new Map(others.flatMap((v) => (v.record?.nics ?? []).map((n): [string, string] => [n.mac, v.name])));
    return { record, dead, macsInUse };
  });
}
