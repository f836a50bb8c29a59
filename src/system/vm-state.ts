/**
 * What is really there for a VM: its record, and the processes that prove it runs. The running qemu is
 * the source of truth: a qemu counts as this VM's only if it is alive with the start time we know (or, from
 * the pidfile, as it is now) and its command line names this VM's run dir — so a reused pid never passes.
 */
import { readFileSync } from 'node:fs';
import type { Owner } from '../core/owner.js';
import { type VmRunFiles, vmRunFiles } from '../core/vm-files.js';
import { currentOwner, isOwnerAlive, processCmdline } from './proc.js';
import { mtimeOf, readRecord, runDirNames, type VmRecord } from './run-dir.js';

/**
 * How long a unit's VM may sit between ExecStartPre (leases taken, nothing of ours running) and qemu's
 * start before gc counts it dead. The unit's TimeoutStartSec is rendered from this same value.
 */
export const UNIT_START_GRACE_S = 120;

/** running: a live qemu; starting: its launcher runs, or a unit's qemu is due; dead: neither. */
export type VmPhase = 'running' | 'starting' | 'dead';

export interface ObservedVm {
  name: string;
  files: VmRunFiles;
  record: VmRecord | null;
  /** Why the record could not be read, when it could not. */
  damaged: string | null;
  qemu: Owner | null;
  launcher: Owner | null;
  phase: VmPhase;
}

export interface ObserveDeps {
  isAlive: (o: Owner) => boolean;
  cmdline: (pid: number) => string[] | null;
  now: number;
}

const realDeps = (): ObserveDeps => ({ isAlive: isOwnerAlive, cmdline: processCmdline, now: Date.now() });

/** Whether a process's command line is this VM's: qemu's -pidfile/-qmp, or the exec.sh that becomes qemu. */
export function runsFrom(cmdline: string[] | null, dir: string): boolean {
  return cmdline !== null && cmdline.some((a) => a.includes(`${dir}/`));
}

function pidfileOwner(files: VmRunFiles): Owner | null {
  try {
    return currentOwner(Number(readFileSync(files.pidfile, 'utf8').trim()));
  } catch {
    return null;
  }
}

/** The VM's live qemu, verified; null when none runs. */
export function liveQemu(files: VmRunFiles, record: VmRecord | null, deps: ObserveDeps = realDeps()): Owner | null {
  const recorded = record?.qemu ?? null;
  if (recorded && deps.isAlive(recorded) && runsFrom(deps.cmdline(recorded.pid), files.dir)) return recorded;
  const fromPidfile = pidfileOwner(files);
  if (fromPidfile && runsFrom(deps.cmdline(fromPidfile.pid), files.dir)) return fromPidfile;
  return null;
}

export function observeVm(runDir: string, name: string, deps: ObserveDeps = realDeps()): ObservedVm {
  const files = vmRunFiles(runDir, name);
  const { record, damaged } = readRecord(files.record);
  const qemu = liveQemu(files, record, deps);
  const launcher = record?.launcher && deps.isAlive(record.launcher) ? record.launcher : null;
  let phase: VmPhase = qemu ? 'running' : launcher ? 'starting' : 'dead';
  if (phase === 'dead' && record?.managedBy === 'unit' && record.qemu === null) {
    const since = Date.parse(record.started);
    if (deps.now - since < UNIT_START_GRACE_S * 1000) phase = 'starting';
  }
  // A dir with no readable record that is younger than a claim takes is left for its claimer.
  if (phase === 'dead' && !record && deps.now - (mtimeOf(files.dir) ?? 0) < 10_000) phase = 'starting';
  return { name, files, record, damaged, qemu, launcher, phase };
}

export function observeAll(runDir: string, deps: ObserveDeps = realDeps()): ObservedVm[] {
  return runDirNames(runDir).map((name) => observeVm(runDir, name, deps));
}

