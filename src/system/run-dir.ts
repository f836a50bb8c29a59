/**
 * A VM's run directory: one per VM name, created exclusively so two launchers cannot run one VM.
 * vm.json in it says who runs the VM; list/status/stop read it.
 */
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { UncloudError } from '../core/errors.js';
import type { NicAddresses } from '../core/nic-guard-rules.js';
import type { VmRunFiles } from '../core/vm-spec.js';
import type { Owner } from '../core/owner.js';
import { writeFileAtomic } from './atomic-file.js';
import { ensurePrivateDir } from './private-dir.js';
import { isOwnerAlive } from './proc.js';

export interface VmRecord {
  version: 1;
  name: string;
  uuid: string;
  launcher: Owner | null;
  qemu: Owner | null;
  /** addresses: the NIC's IPv6 addresses and guard (absent in records of older versions). */
  nics: { index: number; mac: string; tap: string; bridge: string; addresses?: NicAddresses }[];
  started: string;
  qmpSocket: string;
  serialLog: string;
}

export function readRecord(path: string): VmRecord | null {
  try {
    const data = JSON.parse(readFileSync(path, 'utf8')) as VmRecord;
    return data.version === 1 ? data : null;
  } catch {
    return null;
  }
}

export function recordAlive(rec: VmRecord, isAlive: (o: Owner) => boolean = isOwnerAlive): boolean {
  return [rec.launcher, rec.qemu].some((o) => o !== null && isAlive(o));
}

/** Create the VM's run dir; a leftover of a VM that is gone is cleared first. */
export function claimRunDir(runDir: string, files: VmRunFiles, name: string): void {
  ensurePrivateDir(runDir);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      mkdirSync(files.dir, { mode: 0o700 });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const rec = readRecord(files.record);
    if (rec && recordAlive(rec)) {
      const pid = rec.qemu?.pid ?? rec.launcher?.pid;
      throw new UncloudError('VM_RUNNING', `VM ${name} is already running (pid ${pid}); stop it first or pick another --name`);
    }
    rmSync(files.dir, { recursive: true, force: true });
  }
  throw new UncloudError('VM_RUNNING', `VM ${name} is being started by another launcher`);
}

export function writeRecord(files: VmRunFiles, rec: VmRecord): void {
  writeFileAtomic(files.record, `${JSON.stringify(rec, null, 2)}\n`);
}

export function writeScript(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o700 });
  chmodSync(path, 0o700);
}

export function removeRunDir(files: VmRunFiles): void {
  rmSync(files.dir, { recursive: true, force: true });
}
