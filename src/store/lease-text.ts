/**
 * A lease's text in the one form this tool writes it (serializeLease: JSON.stringify of a lease built in its
 * key order), read by one pattern instead of JSON.parse: `mac list` reads every lease of the pool, and
 * JSON.parse was the largest part of its reading. Any other text gives null and is read by JSON.parse.
 */
import type { Owner } from '../core/owner.js';
import type { Lease } from './store.js';

/**
 * A lease as serializeLease writes it, and its values as they stand: strings with no quote, backslash, control
 * character or surrogate (so the text is the value, and JSON.stringify prints it as it stands); integers as
 * JSON prints them, of at most 15 digits (exact in a double); at most a newline after. Groups: mac, vm uuid
 * (absent: none), vm name (absent: vm null), nic ("null" or digits), host, owners ('{"pid":P,"startTime":S}'
 * joined by commas, or empty), created.
 */
export const WRITTEN_LEASE_RE =
  /^\{"version":1,"mac":"([^"\\\u0000-\u001f\ud800-\udfff]*)","vm":(?:null|\{(?:"uuid":"([^"\\\u0000-\u001f\ud800-\udfff]*)",)?"name":"([^"\\\u0000-\u001f\ud800-\udfff]*)"\}),"nic":(null|(?:0|[1-9][0-9]{0,14})),"host":"([^"\\\u0000-\u001f\ud800-\udfff]*)","owners":\[((?:\{"pid":(?:0|[1-9][0-9]{0,14}),"startTime":(?:0|[1-9][0-9]{0,14})\}(?:,\{"pid":(?:0|[1-9][0-9]{0,14}),"startTime":(?:0|[1-9][0-9]{0,14})\})*)?)\],"created":"([^"\\\u0000-\u001f\ud800-\udfff]*)"\}\n?$/;

/** The lease JSON.parse(text) gives, when text is in the written form (WRITTEN_LEASE_RE); otherwise null. */
export function writtenLease(text: string): Lease | null {
  const m = WRITTEN_LEASE_RE.exec(text);
  if (m === null) return null;
  const [, mac, uuid, name, nic, host, ownersText, created] = m as unknown as string[];
  const owners: Owner[] = [];
  // Each '{"pid":' (7 characters) P ',"startTime":' (13) S '}', then a comma before the next.
  for (let at = 0; at < ownersText!.length; ) {
    const comma = ownersText!.indexOf(',', at + 7);
    const end = ownersText!.indexOf('}', comma);
    owners.push({ pid: Number(ownersText!.slice(at + 7, comma)), startTime: Number(ownersText!.slice(comma + 13, end)) });
    at = end + 2;
  }
  const vm = name === undefined ? null : uuid === undefined ? { name } : { uuid, name };
  return { version: 1, mac: mac!, vm, nic: nic === 'null' ? null : Number(nic), host: host!, owners, created: created! };
}
