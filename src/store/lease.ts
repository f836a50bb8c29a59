/** Lease records on disk: JSON, checked field by field so a damaged file is named, never trusted. */
import { UncloudError } from '../core/errors.js';
import type { Lease, VmIdentity } from './pool.js';

export function serializeLease(lease: Lease): string {
  return `${JSON.stringify(lease)}\n`;
}

export function parseLease(text: string, where: string): Lease {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw damagedLease(where, 'not valid JSON');
  }
  const l = data as Partial<Lease> | null;
  if (typeof l !== 'object' || l === null) throw damagedLease(where, 'not a JSON object');
  if (l.version !== 1) {
    throw new UncloudError('STATE_VERSION', `lease ${where} has version ${JSON.stringify(l.version)}; this uncloud-vm reads version 1`);
  }
  if (typeof l.mac !== 'string' || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(l.mac)) throw damagedLease(where, 'bad mac');
  if (l.vm !== null && (typeof l.vm !== 'object' || typeof l.vm?.name !== 'string')) throw damagedLease(where, 'bad vm');
  if (l.nic !== null && typeof l.nic !== 'number') throw damagedLease(where, 'bad nic');
  if (typeof l.host !== 'string') throw damagedLease(where, 'bad host');
  if (!Array.isArray(l.owners) || !l.owners.every((o) => Number.isInteger(o?.pid) && typeof o?.startTime === 'number')) {
    throw damagedLease(where, 'bad owners');
  }
  if (typeof l.created !== 'string') throw damagedLease(where, 'bad created');
  return l as Lease;
}

function damagedLease(where: string, why: string): UncloudError {
  return new UncloudError('STATE_DAMAGED', `lease ${where} is damaged (${why}); it was left untouched: repair or remove it`);
}

export function parseIdentity(text: string, where: string): VmIdentity {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw damaged(where, 'not valid JSON');
  }
  const v = data as Partial<VmIdentity> | null;
  if (typeof v !== 'object' || v === null) throw damaged(where, 'not a JSON object');
  if (v.version !== 1) {
    throw new UncloudError('STATE_VERSION', `VM record ${where} has version ${JSON.stringify(v.version)}; this uncloud-vm reads version 1`);
  }
  if (typeof v.name !== 'string' || typeof v.uuid !== 'string') throw damaged(where, 'bad name or uuid');
  if (!Array.isArray(v.macs) || !v.macs.every((m) => typeof m === 'string' && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m))) {
    throw damaged(where, 'bad macs');
  }
  return v as VmIdentity;
}

function damaged(where: string, why: string): UncloudError {
  return new UncloudError('STATE_DAMAGED', `VM record ${where} is damaged (${why}); it was left untouched: repair or remove it`);
}
