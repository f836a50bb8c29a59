/**
 * The file store's records that hold no address: conflict records (conflicts/<12 hex>.json) and named VMs'
 * identities (vms/<name>.json), and the lookup of one lease. The store (file-store.ts) builds on this.
 */
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { formatMac, parseMac } from '../core/mac.js';
import { removeQuietly, TMP_PREFIX } from '../system/atomic-file.js';
import { type FileRecords, hexOf, namesIn, readRecordText } from './file-records.js';
import { parseConflict, parseIdentity } from './lease.js';
import type { Conflict, DamagedRecord, Lease, VmIdentity } from './store.js';

export class FileSideRecords {
  constructor(protected readonly r: FileRecords) {}

  async get(mac: string): Promise<Lease | null> {
    return this.r.readLeaseQuietly(this.r.leasePath(formatMac(parseMac(mac))));
  }

  async setConflict(mac: string, conflict: Conflict | null): Promise<void> {
    const path = join(this.r.conflictDir, `${hexOf(mac)}.json`);
    if (conflict === null) return removeQuietly(path);
    this.r.ensureDirs();
    mkdirSync(this.r.conflictDir, { recursive: true, mode: 0o700 });
    this.r.writeAtomic(path, `${JSON.stringify(conflict)}\n`);
  }

  async listConflicts(): Promise<{ conflicts: Conflict[]; damaged: DamagedRecord[] }> {
    const damaged: DamagedRecord[] = [];
    return { conflicts: this.readConflicts(damaged), damaged };
  }

  /** Conflict records in MAC order; damaged ones are added to `damagedRecords`. */
  protected readConflicts(damagedRecords: DamagedRecord[]): Conflict[] {
    const out: Conflict[] = [];
    for (const e of jsonNames(this.r.conflictDir)) {
      const path = join(this.r.conflictDir, e);
      try {
        const text = readRecordText('conflict record', path);
        if (text !== null) out.push(parseConflict(text, path));
      } catch (err) {
        damagedRecords.push({ key: path, why: (err as Error).message });
      }
    }
    return out;
  }

  async getIdentity(name: string): Promise<VmIdentity | null> {
    const path = this.identityPath(name);
    const text = readRecordText('VM record', path);
    return text === null ? null : parseIdentity(text, path);
  }

  async putIdentity(identity: VmIdentity): Promise<void> {
    this.r.ensureDirs();
    mkdirSync(this.r.vmsDir, { recursive: true, mode: 0o700 });
    this.r.writeAtomic(this.identityPath(identity.name), `${JSON.stringify(identity)}\n`);
  }

  async listIdentities(): Promise<{ identities: VmIdentity[]; damaged: DamagedRecord[] }> {
    const identities: VmIdentity[] = [];
    const damaged: DamagedRecord[] = [];
    for (const e of jsonNames(this.r.vmsDir)) {
      try {
        const v = await this.getIdentity(e.slice(0, -'.json'.length));
        if (v) identities.push(v);
      } catch (err) {
        damaged.push({ key: join(this.r.vmsDir, e), why: (err as Error).message });
      }
    }
    return { identities, damaged };
  }

  async deleteIdentity(name: string): Promise<boolean> {
    // A damaged one too, whatever is in its place (forget is how an operator removes it).
    if (!existsSync(this.identityPath(name))) return false;
    rmSync(this.identityPath(name), { recursive: true, force: true });
    return true;
  }

  private identityPath(name: string): string {
    return join(this.r.vmsDir, `${name}.json`);
  }
}

/** Record files of a directory (not temp files), sorted. */
function jsonNames(dir: string): string[] {
  return namesIn(dir)
    .filter((e) => e.endsWith('.json') && !e.startsWith(TMP_PREFIX))
    .sort();
}
