import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type DiskRequest, formatDisk, formatSize, parseDisk, parseSize } from '../../src/core/disk-spec.js';
import { splitOptionList } from '../../src/core/quote.js';

describe('parseDisk', () => {
  it.each<[string, DiskRequest]>([
    ['/d/a.qcow2', { path: '/d/a.qcow2', readonly: false }],
    ['a.img,format=raw', { path: 'a.img', format: 'raw', readonly: false }],
    ['file=/d/a.qcow2,format=qcow2,readonly=on,cache=none', { path: '/d/a.qcow2', format: 'qcow2', readonly: true, cache: 'none' }],
    ['/d/a=b.img,readonly=off', { path: '/d/a=b.img', readonly: false }],
    ['/d/a,,b.img,cache=unsafe', { path: '/d/a,b.img', readonly: false, cache: 'unsafe' }],
    ['new=/d/web1.qcow2,size=10G', { path: '/d/web1.qcow2', format: 'qcow2', readonly: false, create: { sizeBytes: 10 * 2 ** 30 } }],
    ['new=web1.qcow2,backing=/img/debian-12.qcow2', { path: 'web1.qcow2', format: 'qcow2', readonly: false, create: { backing: '/img/debian-12.qcow2' } }],
    [
      'new=web1.qcow2,size=20G,backing=base.qcow2,cache=writeback',
      { path: 'web1.qcow2', format: 'qcow2', readonly: false, cache: 'writeback', create: { sizeBytes: 20 * 2 ** 30, backing: 'base.qcow2' } },
    ],
  ])('%s', (text, want) => {
    expect(parseDisk(text)).toEqual(want);
  });

  it.each<[string, RegExp]>([
    ['', /the path must be a non-empty path/],
    ['a.img,format=vmdk', /format is raw or qcow2/],
    ['a.img,readonly=yes', /readonly is on or off/],
    ['a.img,cache=fast', /cache is one of none, writeback, writethrough, directsync, unsafe/],
    ['a.img,if=ide', /unknown key 'if'; allowed: format, readonly, cache, or new=, size, backing/],
    ['a.img,readonly', /'readonly' is not key=value; a comma in a path is written ',,'/],
    ['a.img,size=10G', /size= and backing= go with new=<path>/],
    ['a.img,backing=b.img', /size= and backing= go with new=<path>/],
    ['new=a.qcow2', /new= needs size=<n>G \(or backing=<base>/],
    ['new=a.qcow2,size=10G,format=raw', /format=raw does not go with it/],
    ['new=a.qcow2,size=10', /invalid disk size '10'/],
    ['new=a.qcow2,size=0G', /more than 0/],
    ['new=a.qcow2,size=65T', /at most 64T/],
    ['format=raw', /expected <path>\[,format=raw\|qcow2\]/],
    ['a.img,new=b.qcow2', /new= comes first/],
    ['a\nb.img', /free of control characters/],
  ])('refuses %j', (text, re) => {
    expect(() => parseDisk(text)).toThrow(re);
    try {
      parseDisk(text);
    } catch (err) {
      expect((err as { exitCode: number }).exitCode).toBe(2);
      expect((err as Error).message).not.toContain('\n');
    }
  });
});

describe('sizes', () => {
  it.each([
    ['512M', 512 * 2 ** 20],
    ['10G', 10 * 2 ** 30],
    ['10GiB', 10 * 2 ** 30],
    ['1t', 2 ** 40],
    ['64K', 64 * 1024],
  ])('%s', (text, bytes) => {
    expect(parseSize(text, 'size')).toBe(bytes);
  });
  it.each([
    [10 * 2 ** 30, '10G'],
    [1536 * 2 ** 20, '1536M'],
    [2 ** 40, '1T'],
    [4096, '4K'],
  ])('%d bytes print as %s', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });
});

describe('round trip', () => {
  const path = fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !/[\u0000-\u001f\u007f]/.test(s));
  it('parseDisk(formatDisk(d)) gives d back for any path, including commas and "="', () => {
    fc.assert(
      fc.property(
        path,
        fc.option(fc.constantFrom('raw', 'qcow2') as fc.Arbitrary<'raw' | 'qcow2'>, { nil: undefined }),
        fc.boolean(),
        fc.option(fc.constantFrom('none', 'writeback', 'unsafe') as fc.Arbitrary<'none' | 'writeback' | 'unsafe'>, { nil: undefined }),
        fc.option(fc.record({ size: fc.integer({ min: 1, max: 4096 }), backing: fc.option(path, { nil: undefined }) }), { nil: undefined }),
        (p, format, readonly, cache, create) => {
          const d: DiskRequest = { path: p, readonly };
          if (cache) d.cache = cache;
          if (create) {
            d.format = 'qcow2';
            d.create = { sizeBytes: create.size * 2 ** 20 };
            if (create.backing !== undefined) d.create.backing = create.backing;
          } else if (format) d.format = format;
          expect(parseDisk(formatDisk(d))).toEqual(d);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('splitOptionList reads ",," as a comma', () => {
    expect(splitOptionList('a,,b,c,,,,d,')).toEqual(['a,b', 'c,,d', '']);
  });
});
