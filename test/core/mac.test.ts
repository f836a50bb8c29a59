import { describe, expect, it } from 'vitest';
import {
  advance,
  type FreeFrom,
  formatMac,
  freeFromPredicate,
  freeFromSorted,
  inPool,
  isLocallyAdministered,
  isMulticast,
  macAt,
  nextFree,
  parseMac,
  parsePool,
  tapMacFor,
  usableCount,
  validateGuestMac,
} from '../../src/core/mac.js';
import { UncloudError } from '../../src/core/errors.js';

describe('first-octet bits', () => {
  it.each([
    ['42:00:00:00:00:01', false, true],
    ['43:00:00:00:00:01', true, true],
    ['00:16:3e:00:00:01', false, false],
    ['01:00:5e:00:00:01', true, false],
    ['fe:00:00:00:00:01', false, true],
  ])('%s: multicast %s, locally administered %s', (mac, multicast, local) => {
    expect([isMulticast(parseMac(mac)), isLocallyAdministered(parseMac(mac))]).toEqual([multicast, local]);
  });
});

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

  // Also 17 characters with one wrong: the characters beside 0-9 and a-f, a separator that is not ':'.
  it.each(['', '42:00:00:00:00', '42:00:00:00:00:00:00', '42:00:00:00:00:0g', '4200.0000.0001', '420:00:00:00:00:1', '42::00:00:00:00', '/2:00:00:00:00:01', '42:00:00:00:00:0`', '42:00:00:00:00;01', '42:00:00:00:00:01:'])(
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
    ['03', /multicast/],
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

  // Defect 13 of the crash-path issue: a forced multicast prefix has no address a NIC can carry.
  it.each(['03', '03:00:00', '43', 'ff:ff:ff:ff:ff', '01:00:5e'])('refuses the multicast prefix %s even when forced', (text) => {
    expect(() => parsePool(text, { force: true })).toThrow(/first octet is multicast.*even with --force-prefix/);
  });
});

describe('cursor arithmetic', () => {
  const tiny = parsePool('42:00:00:00:00'); // 256 addresses

  const heldSet = (taken: number[]) => {
    const set = new Set(taken);
    return freeFromPredicate((i) => set.has(i));
  };

  it.each([
    // cursor, taken indices, expected
    [0, [], 0],
    [5, [5, 6], 7],
    [254, [254, 255], 0],
    [255, [255, 0, 1], 2],
    [10, [], 10],
    [300, [44], 45], // a cursor past the end wraps
    [-1, [], 255],
  ])('next free from %d with %j taken is %d', (cursor, taken, want) => {
    expect(nextFree(tiny, cursor, heldSet(taken))).toBe(want);
    expect(nextFree(tiny, cursor, freeFromSorted([...taken].sort((a, b) => a - b)))).toBe(want);
  });

  it('returns null when every address is taken (exhaustion)', () => {
    expect(nextFree(tiny, 17, () => 256)).toBeNull();
    expect(nextFree(tiny, 17, freeFromPredicate(() => true))).toBeNull();
  });
  it('a freed address is not reused before the cursor comes round', () => {
    const held = new Set<number>();
    let cursor = 0;
    const take = (): number => {
      const i = nextFree(tiny, cursor, freeFromPredicate((x) => held.has(x)))!;
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

  it('skips the all-zero address of a forced pool', () => {
    const pool = parsePool('00:00:00:00:00', { force: true });
    expect(usableCount(pool)).toBe(255);
    expect(nextFree(pool, 0, () => 0 as number)).toBeNull(); // a FreeFrom that never moves is still bounded
    expect(nextFree(pool, 0, freeFromPredicate(() => false))).toBe(1);
  });
});

describe('usableCount', () => {
  it.each([
    ['42:00:00', 2 ** 24],
    ['42', 2 ** 40],
    ['00:00:00:00:00', 255],
  ])('%s has %d usable addresses', (prefix, n) => {
    expect(usableCount(parsePool(prefix, { force: true }))).toBe(n);
  });
  it('is 0 for a multicast base (only reachable by building a Pool by hand)', () => {
    expect(usableCount({ prefix: '03', octets: 1, base: 0x03 * 2 ** 40, size: 2 ** 40 })).toBe(0);
    expect(nextFree({ prefix: '03', octets: 1, base: 0x03 * 2 ** 40, size: 2 ** 40 }, 0, () => 0)).toBeNull();
  });
});

describe('freeFromSorted', () => {
  it.each([
    // held, from, where the scan goes on
    [[], 5, 5],
    [[5], 5, 6],
    [[5], 4, 4],
    [[1, 2, 3, 7, 8], 1, 4],
    [[1, 2, 3, 7, 8], 2, 4],
    [[1, 2, 3, 7, 8], 7, 9],
    [[1, 2, 3, 7, 8], 5, 5],
    [[0, 1, 2, 3], 0, 4],
  ])('held %j: from %d the scan goes on at %d', (held, from, want) => {
    expect(freeFromSorted(held)(from)).toBe(want);
  });
});

// Defect 13 of the crash-path issue and the scaling issue: a long held run costs O(log n), not O(run).
describe('bounded scans', () => {
  const counting = (inner: FreeFrom) => {
    let probes = 0;
    const f: FreeFrom = (i) => {
      probes += 1;
      return inner(i);
    };
    return { f, probes: () => probes };
  };

  it('a cursor inside a held run of 1,000,000 finds the first free address in one probe past the run', () => {
    const pool = parsePool('42:00:00');
    const held = Array.from({ length: 1_000_000 }, (_, i) => 100 + i);
    const c = counting(freeFromSorted(held));
    expect(nextFree(pool, 500_000, c.f)).toBe(1_000_100);
    expect(c.probes()).toBe(2);
  });

  it('a 2^40-address pool that is held from the cursor on answers in a handful of probes', () => {
    const pool = parsePool('42');
    const c = counting((i) => (i >= 7 ? pool.size : i === 3 ? 3 : i + 1));
    expect(nextFree(pool, 7, c.f)).toBe(3);
    expect(c.probes()).toBeLessThanOrEqual(5);
    const full = counting(() => pool.size);
    expect(nextFree(pool, 7, full.f)).toBeNull();
    expect(full.probes()).toBe(2);
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
