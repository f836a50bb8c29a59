/** `mac list --json`'s rows: printed from a lease the store gave printed, or printed here; the same bytes either way. */
import { describe, expect, it } from 'vitest';
import { printRows, type RowExtra } from '../../../src/cli/commands/mac.js';
import { printJson } from '../../../src/store/file-lease-pages.js';
import type { Lease } from '../../../src/store/store.js';

const base: Lease = { version: 1, mac: '42:00:00:00:00:01', vm: { uuid: '00000000-0000-4000-8000-000000000001', name: 'web1' }, nic: 0, host: 'h', owners: [{ pid: 7, startTime: 9 }], created: '1970-01-01T00:00:00.000Z' };
const conflict = { mac: base.mac, host: 'h2', vm: { name: 'other' }, seen: 'x' } as unknown as RowExtra['conflict'];

/** The rows as mac list printed them before any was given printed: {...lease, state, addresses, conflict?}. */
const reference = (leases: Lease[], extras: RowExtra[]) =>
  JSON.stringify(
    leases.map((l, i) => {
      const { state, addresses, conflict: c } = extras[i]!;
      return c ? { ...l, state, addresses, conflict: c } : { ...l, state, addresses };
    }),
    null,
    2,
  ).slice(2, -2);

/** A lease as the store reads it: parsed from the text it was written as. */
const read = (text: string) => JSON.parse(text) as Lease;

const cases: [string, string, RowExtra][] = [
  ['plain', JSON.stringify(base), { state: 'live', addresses: { linkLocal: 'fe80::4000:ff:fe00:1' }, conflict: undefined }],
  ['no vm, no owners', JSON.stringify({ ...base, vm: null, nic: null, owners: [] }), { state: 'held', addresses: { linkLocal: 'fe80::1' }, conflict: undefined }],
  ['text that JSON escapes', JSON.stringify({ ...base, vm: { name: 'a"b\\c\u2028é' }, host: 'h\u00e9"' }), { state: 'stale', addresses: { linkLocal: 'fe80::1' }, conflict: undefined }],
  ['a number JSON has no text for', JSON.stringify(base).replace('"startTime":9', '"startTime":1e400'), { state: 'stale', addresses: { linkLocal: 'fe80::1' }, conflict: undefined }],
  ['several owners, vm with more keys', JSON.stringify({ ...base, vm: { name: 'x', uuid: 'u', extra: [1, {}] }, owners: [{ pid: 1, startTime: 2 }, { pid: 3, startTime: 4 }] }), { state: 'live', addresses: { linkLocal: 'fe80::1' }, conflict: undefined }],
  ['a conflict', JSON.stringify(base), { state: 'conflict', addresses: { linkLocal: 'fe80::1' }, conflict }],
  ['known addresses', JSON.stringify(base), { state: 'live', addresses: { linkLocal: 'fe80::1', eui64: ['2001:db8::1'], allowed: null }, conflict: undefined }],
  ['keys in another order', JSON.stringify({ mac: base.mac, version: 1, vm: null, nic: null, host: 'h', owners: [], created: 'c' }), { state: 'held', addresses: { linkLocal: 'fe80::1' }, conflict: undefined }],
  ['a key of its own', JSON.stringify({ ...base, note: 'x' }), { state: 'live', addresses: { linkLocal: 'fe80::1' }, conflict: undefined }],
  ['its own state key', JSON.stringify({ ...base, state: 'mine' }), { state: 'live', addresses: { linkLocal: 'fe80::1' }, conflict: undefined }],
];

describe('printRows', () => {
  it.each(cases)('%s: one row, printed from the store or here, as JSON.stringify prints it', (_name, text, extra) => {
    const want = reference([read(text)], [extra]);
    expect(printRows({ leases: [read(text)], damaged: [], json: [printJson(text)] }, () => extra)).toEqual([want]);
    expect(printRows({ leases: [read(text)], damaged: [], json: [null] }, () => extra)).toEqual([want]);
    expect(printRows({ leases: [read(text)], damaged: [] }, () => extra)).toEqual([want]);
  });

  it('a page of every case 25 times, some given printed and some not: in order, in pieces of 100 rows', () => {
    const all = Array.from({ length: 25 }, () => cases).flat();
    const texts = all.map(([, t]) => t);
    const extras = all.map(([, , e]) => e);
    const leases = texts.map(read);
    const json = texts.map((t, i) => (i % 3 === 0 ? null : printJson(t)));
    const extraOf = (l: Lease) => extras[leases.indexOf(l)]!;
    const pieces = printRows({ leases, damaged: [], json }, extraOf);
    expect(pieces.join(',\n')).toBe(reference(leases, extras));
    expect(pieces.map((p) => p.split('\n  },\n  {').length)).toEqual([100, 100, 50]);
  });

  it('an empty page prints nothing', () => {
    expect(printRows({ leases: [], damaged: [], json: [] }, () => cases[0]![2])).toEqual([]);
  });
});
