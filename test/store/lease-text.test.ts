/** A lease in the form this tool writes, read by a pattern: what JSON.parse gives, or null for any other text. */
import { describe, expect, it } from 'vitest';
import { writtenLease } from '../../src/store/lease-text.js';

const lease = { version: 1, mac: '42:00:00:00:00:07', vm: { uuid: '00000000-0000-4000-8000-000000000007', name: 'web 1' }, nic: 3, host: 'h', owners: [{ pid: 42, startTime: 123456789012345 }], created: '1970-01-01T00:00:00.000Z' };
const w = JSON.stringify(lease);

describe('writtenLease', () => {
  it.each([
    ['as written', lease],
    ['no vm, no nic, no owners (mac allocate)', { ...lease, vm: null, nic: null, owners: [] }],
    ['a vm with a name alone', { ...lease, vm: { name: 'r1' } }],
    ['two owners, zeros', { ...lease, nic: 0, owners: [{ pid: 1, startTime: 0 }, { pid: 20, startTime: 3 }] }],
    ['three owners', { ...lease, owners: [{ pid: 1, startTime: 2 }, { pid: 3, startTime: 4 }, { pid: 5, startTime: 999999999999999 }] }],
    ['empty strings, non-ASCII, U+2028, DEL', { ...lease, host: '', created: 'hôte\u2028\u007f', vm: { name: 'ü' } }],
  ])('%s: what JSON.parse gives, keys in the same order', (_, value) => {
    for (const text of [`${JSON.stringify(value)}\n`, JSON.stringify(value)]) {
      const got = writtenLease(text);
      expect(got).toEqual(JSON.parse(text));
      expect(JSON.stringify(got)).toBe(JSON.stringify(JSON.parse(text)));
    }
  });

  it.each([
    ['an escape in a string', w.replace('web 1', 'web\\"1')],
    ['an escaped letter', w.replace('web 1', 'web\\u00411')],
    ['a surrogate pair', w.replace('web 1', 'web 🙂')],
    ['a lone surrogate', w.replace('web 1', 'web\ud800')],
    ['a control character', w.replace('web 1', 'web\n1')],
    ['a space after a colon', w.replace('"nic":3', '"nic": 3')],
    ['spaces after the record', `${w}  \n`],
    ['two newlines after the record', `${w}\n\n`],
    ['keys in another order', w.replace('{"pid":42,"startTime":123456789012345}', '{"startTime":123456789012345,"pid":42}')],
    ['vm keys in another order', w.replace('{"uuid":"00000000-0000-4000-8000-000000000007","name":"web 1"}', '{"name":"web 1","uuid":"x"}')],
    ['another key', w.replace('"nic":3', '"nic":3,"x":1')],
    ['a fraction', w.replace('"nic":3', '"nic":1.5')],
    ['an exponent', w.replace('"pid":42', '"pid":42e1')],
    ['a minus', w.replace('"pid":42', '"pid":-1')],
    ['a leading zero', w.replace('"pid":42', '"pid":042')],
    ['16 digits', w.replace('123456789012345', '1234567890123456')],
    ['another version', w.replace('"version":1', '"version":2')],
    ['a trailing comma in owners', w.replace('345}]', '345},]')],
    ['nic as a string', w.replace('"nic":3', '"nic":"3"')],
    ['cut short', w.slice(0, -1)],
  ])('%s: null (JSON.parse reads it)', (_, text) => {
    expect(writtenLease(text)).toBeNull();
  });
});
