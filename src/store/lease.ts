/** Lease records on disk: JSON, checked field by field so a damaged file is named, never trusted. */
import { UncloudError } from '../core/errors.js';
import { MAC_TEXT_RE } from '../core/mac.js';
import { isPrintableText, LEASE_NAME_MAX } from '../core/quote.js';
import { NAME_RE, UUID_RE } from '../core/vm-identity.js';
import { writtenLease } from './lease-text.js';
import type { Conflict, Lease, VmIdentity } from './store.js';

/** The longest host name a lease may carry (DNS allows 253 characters). */
const HOST_MAX = 253;

export function serializeLease(lease: Lease): string {
  return `${JSON.stringify(lease)}\n`;
}

/** A JSON object of a known version, or an error naming the file. */
export function parseRecord<T>(text: string, what: string, where: string): Partial<T> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw damaged(what, where, 'not valid JSON');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw damaged(what, where, 'not a JSON object');
  const version = (data as { version?: unknown }).version;
  if (version !== 1) {
    throw new UncloudError('STATE_VERSION', `${what} ${where} has version ${JSON.stringify(version)}; this uncloud-vm reads version 1`);
  }
  return data as Partial<T>;
}

export function damaged(what: string, where: string, why: string): UncloudError {
  return new UncloudError('STATE_DAMAGED', `${what} ${where} is damaged (${why}); it was left untouched: repair or remove it`);
}


const HEX12_RE = /^[0-9a-f]{12}$/;

/**
 * Whether a key ending with 12 hex digits (a file: then ".json") names this MAC (lowercase, with colons);
 * any other key names none. Compared in place: `mac list` checks every lease.
 */
function keyHolds(where: string, mac: string): boolean {
  const hex = where.endsWith('.json') ? where.slice(-17, -5) : where.slice(-12);
  if (!HEX12_RE.test(hex)) return true;
  for (let i = 0; i < 12; i++) if (hex.charCodeAt(i) !== mac.charCodeAt(i + (i >> 1))) return false;
  return true;
}

/**
 * A lease record. `where` is its file path or etcd key; both end with the MAC's 12 hex digits (a file
 * with ".json"), and a record that names another MAC than its key is damaged, not trusted.
 */
export function parseLease(text: string, where: string): Lease {
  // Most records are in the form this tool writes: read by a pattern (lease-text.ts), checked as any other.
  const l: Partial<Lease> = writtenLease(text) ?? parseRecord<Lease>(text, 'lease', where);
  const damagedLease = (w: string, why: string) => damaged('lease', w, why);
  if (typeof l.mac !== 'string' || !MAC_TEXT_RE.test(l.mac)) throw damagedLease(where, 'bad mac');
  if (!keyHolds(where, l.mac)) throw damagedLease(where, `its mac ${l.mac} is not the one its name holds`);
  // Text that is printed: a hand-edited name with control characters could move the operator's terminal, a
  // huge one would widen every row of `mac list`'s table to its width.
  if (l.vm !== null && (typeof l.vm !== 'object' || !isPrintableText(l.vm?.name, LEASE_NAME_MAX))) throw damagedLease(where, 'bad vm');
  if (l.nic !== null && typeof l.nic !== 'number') throw damagedLease(where, 'bad nic');
  if (!isPrintableText(l.host, HOST_MAX)) throw damagedLease(where, 'bad host');
  if (!Array.isArray(l.owners) || !l.owners.every((o) => Number.isInteger(o?.pid) && typeof o?.startTime === 'number')) {
    throw damagedLease(where, 'bad owners');
  }
  if (!isPrintableText(l.created, 64)) throw damagedLease(where, 'bad created');
  return l as Lease;
}

export function parseIdentity(text: string, where: string): VmIdentity {
  const v = parseRecord<VmIdentity>(text, 'VM record', where);
  if (typeof v.name !== 'string' || !NAME_RE.test(v.name) || typeof v.uuid !== 'string' || !UUID_RE.test(v.uuid)) {
    throw damaged('VM record', where, 'bad name or uuid');
  }
  if (!Array.isArray(v.macs) || !v.macs.every((m) => typeof m === 'string' && MAC_TEXT_RE.test(m))) {
    throw damaged('VM record', where, 'bad macs');
  }
  return v as VmIdentity;
}

export function parseConflict(text: string, where: string): Conflict {
  const c = parseRecord<Conflict>(text, 'conflict record', where);
  if (typeof c.mac !== 'string' || !MAC_TEXT_RE.test(c.mac)) throw damaged('conflict record', where, 'bad mac');
  if (typeof c.host !== 'string' || typeof c.vm?.name !== 'string') throw damaged('conflict record', where, 'bad host or vm');
  return c as Conflict;
}
