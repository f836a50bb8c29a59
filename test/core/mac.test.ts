import { describe, expect, it } from 'vitest';
import {
  advance,
  candidates,
  formatMac,
  inPool,
  macAt,
  nextFree,
  parseMac,
  parsePool,
  tapMacFor,
  validateGuestMac,
} from '../../src/core/mac.js';
import { UncloudError } from '../../src/core/errors.js';

describe('parseMac / formatMac', () => {
  it.each([
    ['42:00:00:00:00:01', 0x420000000001],
    ['42-00-00-00-00-01', 0x420000000001],
    ['AA:bb:CC:dd:EE:ff', 0xaabbccddeeff],
    [' 00:00:00:00:00:00 ', 0],
    ['ff:ff:ff:ff:ff:ff', 0xffffffffffff],
  ])('parses %s', (text, value) => {
    expect(parseMac(text)).toBe(value);
  });

  it.each(['', '42:00:00:00:00', '42:00:00:00:00:00:00', '42:00:00:00:00:0g', '4200.0000.0001', '420:00:00:00:00:1', '42::00:00:00:00'])(
    'refuses %j with a usage error',
    (text) => {
      expect(() => parseMac(text)).toThrow(/invalid MAC address/);
      try {
        parseMac(text);
      } catch (err) {
        expect((err as UncloudError).exitCode).toBe(2);
      }
    },
  );

  it.each([
    [0x420000000001, '42:00:00:00:00:01'],
    [0, '00:00:00:00:00:00'],
    [0xffffffffffff, 'ff:ff:ff:ff:ff:ff'],
  ])('formats %d as %s', (value, text) => {
    expect(formatMac(value)).toBe(text);
    expect(parseMac(formatMac(value))).toBe(value);
  });

  it.each([-1, 2 ** 48, 1.5])('refuses to format %d', (v) => {
    expect(() => formatMac(v)).toThrow(RangeError);
  });
});

describe('validateGuestMac', () => {
  it.each([
    ['01:00:5e:00:00:01', /multicast/],
    ['ff:ff:ff:ff:ff:ff', /multicast/],
    ['00:00:00:00:00:00', /all-zero/],
  ])('refuses %s', (mac, re) => {
    expect(() => validateGuestMac(parseMac(mac))).toThrow(re);
  });
  it('accepts a unicast address', () => {
    expect(() => validateGuestMac(parseMac('42:00:00:00:00:07'))).not.toThrow();
  });
});

describe('parsePool', () => {
  it.each([
    ['42:00:00', 3, 2 ** 24, 0x420000000000],
    ['42', 1, 2 ** 40, 0x420000000000],
    ['42:00:00:00:ab', 5, 256, 0x42000000ab00],
    ['0A:11', 2, 2 ** 32, 0x0a1100000000],
  ])('%s has %d octets and %d addresses', (text, octets, size, base) => {
    const pool = parsePool(text);
    expect(pool.octets).toBe(octets);
    expect(pool.size).toBe(size);
    expect(pool.base).toBe(base);
  });

  it.each([
    ['', /expected 1 to 5 hex octets/],
    ['42:00:00:00:00:00', /expected 1 to 5 hex octets/],
    ['4', /expected 1 to 5 hex octets/],
    ['43:00:00', /multicast/],
    ['40:00:00', /not locally administered/],
    ['00:16:3e', /not locally administered/],
    ['52:54:00', /QEMU's own default range/],
    ['52:54:00:12', /QEMU's own default range/],
    ['fe:00', /reserved for the host side of taps/],
  ])('refuses %j', (text, re) => {
    expect(() => parsePool(text)).toThrow(re);
  });

  it('accepts a globally administered prefix when forced, but never 52:54:00 or fe', () => {
    expect(parsePool('00:16:3e', { force: true }).size).toBe(2 ** 24);
    expect(() => parsePool('52:54:00', { force: true })).toThrow();
    expect(() => parsePool('fe', { force: true })).toThrow();
  });
});

describe('cursor arithmetic', () => {
  const tiny = parsePool('42:00:00:00:00'); // 256 addresses

  it('walks from the cursor and wraps once', () => {
    const got = [...candidates(tiny, 254)].slice(0, 4);
    expect(got).toEqual([254, 255, 0, 1]);
    expect([...candidates(tiny, 7)]).toHaveLength(256);
  });

  it.each([
    // cursor, taken indices, expected
    [0, [], 0],
    [5, [5, 6], 7],
    [254, [254, 255], 0],
    [255, [255, 0, 1], 2],
    [10, [], 10],
  ])('next free from %d with %j taken is %d', (cursor, taken, want) => {
    const set = new Set(taken);
    expect(nextFree(tiny, cursor, (i) => set.has(i))).toBe(want);
  });

  it('returns null when every address is taken (exhaustion)', () => {
    expect(nextFree(tiny, 17, () => true)).toBeNull();
  });

  it('a freed address is not reused before the cursor comes round', () => {
    const held = new Set<number>();
    let cursor = 0;
    const take = (): number => {
      const i = nextFree(tiny, cursor, (x) => held.has(x))!;
      held.add(i);
      cursor = advance(tiny, i);
      return i;
    };
    expect([take(), take(), take()]).toEqual([0, 1, 2]);
    held.delete(1);
    expect(take()).toBe(3);
  });

  it('advance wraps at the end of the pool', () => {
    expect(advance(tiny, 255)).toBe(0);
    expect(advance(tiny, 3)).toBe(4);
  });

  it('macAt and inPool agree', () => {
    expect(formatMac(macAt(tiny, 0))).toBe('42:00:00:00:00:00');
    expect(formatMac(macAt(tiny, 255))).toBe('42:00:00:00:00:ff');
    expect(inPool(tiny, parseMac('42:00:00:00:01:00'))).toBe(false);
  });

  it('skips the all-zero and multicast addresses of a forced pool', () => {
    const pool = parsePool('00:00:00:00:00', { force: true });
    expect([...candidates(pool, 0)][0]).toBe(1);
    const mc = parsePool('01:00:00:00:00', { force: true });
    expect([...candidates(mc, 0)]).toHaveLength(0);
  });
});

describe('tapMacFor', () => {
  it.each([
    ['42:00:00:00:00:01', 'fe:00:00:00:00:01'],
    ['42:ab:cd:ef:12:34', 'fe:ab:cd:ef:12:34'],
  ])('%s → %s', (guest, tap) => {
    expect(formatMac(tapMacFor(parseMac(guest)))).toBe(tap);
  });
});
