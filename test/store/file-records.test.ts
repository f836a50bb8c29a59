/** A page of lease files read as leases: damaged and vanished files apart, the printed leases lined up with the leases. */
import { describe, expect, it } from 'vitest';
import { type FileText, printJson } from '../../src/store/file-lease-pages.js';
import { leasePageOf } from '../../src/store/file-records.js';

const lease = (hex: string) => ({ version: 1, mac: hex.match(/../g)!.join(':'), vm: null, nic: null, host: 'h', owners: [], created: 'c' });
const text = (hex: string) => `${JSON.stringify(lease(hex))}\n`;

// A lease, one that is not JSON, one naming another MAC, one that vanished, one that cannot be read, a lease.
const names = ['420000000001.json', '420000000002.json', '420000000003.json', '420000000004.json', '420000000005.json', '420000000006.json'];
const texts: FileText[] = [text('420000000001'), 'not json', text('420000000009'), null, { error: 'EIO: i/o error, read' }, text('420000000006')];

describe('leasePageOf', () => {
  it('leases in order; damaged records named; a vanished file is neither', () => {
    const page = leasePageOf('/d', { names, texts });
    expect(page.leases).toEqual([lease('420000000001'), lease('420000000006')]);
    expect(page.damaged.map((d) => d.key)).toEqual(['/d/420000000002.json', '/d/420000000003.json', '/d/420000000005.json']);
    expect(page.damaged[2]!.why).toMatch(/cannot be read: EIO/);
    expect(page.json).toBeUndefined();
  });

  it('printed: each lease its own printed text, whatever was left out between them', () => {
    const page = leasePageOf('/d', { names, texts, json: texts.map(printJson) });
    expect(page.json).toEqual([printJson(text('420000000001')), printJson(text('420000000006'))]);
    expect(page.json).toEqual(page.leases.map((l) => JSON.stringify([l], null, 2).slice(2, -2)));
  });
});
