import { describe, expect, it } from 'vitest';
import { contains, formatCidr, formatIpv6, minimalCover, parseCidr, parseIpv4, parseIpv6 } from '../../src/core/ip.js';

describe('IPv6 text', () => {
  it.each([
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // RFC 5952 4.2.3: the first of two equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // 4.2.2: one zero group stays
    ['2001:DB8::AB', '2001:db8::ab'], // 4.3: lower case
    ['2001:db8::0:1', '2001:db8::1'],
    ['::', '::'],
    ['::1', '::1'],
    ['fe80::', 'fe80::'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], // 4.2.3: the longest run
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
  ])('%s → %s', (text, want) => {
    expect(formatIpv6(parseIpv6(text)!)).toBe(want);
  });
  it.each(['', ':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', 'g::1', '::ffff:1.2.3.4', ' ::1', '1:2:3:4:5:6:7::8'])(
    'refuses %j',
    (text) => {
      expect(parseIpv6(text)).toBeNull();
    },
  );
});

describe('IPv4 text', () => {
  it.each([
    ['192.0.2.7', 0xc0000207n],
    ['0.0.0.0', 0n],
    ['255.255.255.255', 0xffffffffn],
  ])('%s', (text, want) => {
    expect(parseIpv4(text)).toBe(want);
  });
  it.each(['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.-4', '1.2.3.4 ', '0x1.2.3.4'])('refuses %j', (text) => {
    expect(parseIpv4(text)).toBeNull();
  });
});

describe('parseCidr', () => {
  it.each([
    ['2001:db8:1::/64', 6, '2001:db8:1::/64'],
    ['2001:db8:1::5', 6, '2001:db8:1::5'],
    ['2001:db8:1::5/128', 6, '2001:db8:1::5'],
    ['::/0', 6, '::/0'],
    ['10.0.0.0/8', 4, '10.0.0.0/8'],
    ['10.1.2.3/32', 4, '10.1.2.3'],
  ] as const)('%s', (text, family, want) => {
    expect(formatCidr(parseCidr(text, family, 'x'))).toBe(want);
  });
  it.each([
    ['2001:db8:1::5/64', 6, /host bits are set; give the network 2001:db8:1::\/64 or the address 2001:db8:1::5/],
    ['10.0.0.1/8', 4, /give the network 10\.0\.0\.0\/8 or the address 10\.0\.0\.1/],
    ['10.0.0.0/33', 4, /prefix length must be 0 to 32/],
    ['10.0.0.0/08', 4, /prefix length/],
    ['10.0.0.0/', 4, /prefix length/],
    ['2001:db8::/64/64', 6, /prefix length/],
    ['fe80::1%eth0', 6, /expected an IPv6 address or prefix/],
  ] as const)('refuses %s', (text, family, re) => {
    expect(() => parseCidr(text, family, 'x')).toThrow(re);
  });
});

describe('minimalCover', () => {
  const c = (t: string) => parseCidr(t, 6, 'x');
  it('drops what another entry covers, and duplicates; sorts', () => {
    const out = minimalCover([c('2001:db8:1::5'), c('2001:db8::/32'), c('fe80::1'), c('fe80::1'), c('::'), c('2001:db8:1::/64')]);
    expect(out.map(formatCidr)).toEqual(['::', '2001:db8::/32', 'fe80::1']);
  });
  it('contains', () => {
    expect(contains(c('2001:db8::/32'), c('2001:db8:ffff::1'))).toBe(true);
    expect(contains(c('2001:db8::/32'), c('2001:db9::1'))).toBe(false);
    expect(contains(c('2001:db8:1::/64'), c('2001:db8::/32'))).toBe(false);
  });
});
