/** VMs written straight into a run dir for tests of what reads it: a record, and a process standing in for qemu. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Owner } from '../../src/core/owner.js';
import { vmRunFiles } from '../../src/core/vm-files.js';
import { currentOwner } from '../../src/system/proc.js';
import type { VmRecord } from '../../src/system/run-dir.js';

/** An owner that is not alive: this process's pid with a start time it never had. */
export const deadOwner: Owner = { pid: process.pid, startTime: -1 };

let n = 0;
/** A UUID unique to this process and call: its first ten hex digits make tap names, so a test's taps are its own. */
export const testUuid = (): string => `${(process.pid * 1000 + ++n).toString(16).padStart(8, '0')}-aaaa-4000-8000-${String(n).padStart(12, '0')}`;

/**
 * Write a VM's run dir with its record (a dead launcher unless `rec` says otherwise). `running`: start a
 * process whose command line names a file in the run dir, as qemu's -pidfile does, and record it as qemu;
 * it goes into `started` for the caller to kill.
 */
export function writeRunDirVm(runDir: string, name: string, rec: Partial<VmRecord>, running: ChildProcess[] | null = null): VmRecord {
  const files = vmRunFiles(runDir, name);
  mkdirSync(files.dir, { recursive: true });
  let qemu: Owner | null = null;
  if (running) {
    const child = spawn('sh', ['-c', 'sleep 1000; :', files.pidfile], { stdio: 'ignore' });
    running.push(child);
    qemu = currentOwner(child.pid!)!;
  }
  const full: VmRecord = {
    version: 1, name, uuid: testUuid(), launcher: deadOwner, qemu, managedBy: 'launcher', taps: [], nics: [], started: new Date(0).toISOString(),
    qmpSocket: files.qmpSocket, serialLog: join(files.dir, 'serial.log'), ...rec,
  };
  writeFileSync(files.record, JSON.stringify(full));
  return full;
}
