import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { eui64Address, eui64InterfaceId, linkLocalAddress, linkLocalText } from '../../src/core/eui64.js';
import { formatIpv6, parseCidr } from '../../src/core/ip.js';
import { parseMac } from '../../src/core/mac.js';

describe('EUI-64 (RFC 4291 appendix A)', () => {
  it.each([
    // RFC 2464 section 4: 34-56-78-9A-BC-DE has the interface identifier 3656:78FF:FE9A:BCDE.
    ['34:56:78:9a:bc:de', 'fe80::3656:78ff:fe9a:bcde'],
    // QEMU's default MAC, as every Linux guest on QEMU shows it.
    ['52:54:00:12:34:56', 'fe80::5054:ff:fe12:3456'],
    ['00:25:96:12:34:56', 'fe80::225:96ff:fe12:3456'],
    ['42:00:00:00:00:01', 'fe80::4000:ff:fe00:1'],
    ['00:00:00:00:00:00', 'fe80::200:ff:fe00:0'],
    ['ff:ff:ff:ff:ff:ff', 'fe80::fdff:ffff:feff:ffff'],
    // Group 4 zero: it joins the zeros after fe80.
    ['02:00:00:00:00:00', 'fe80::ff:fe00:0'],
    ['02:00:12:34:56:78', 'fe80::12ff:fe34:5678'],
    ['03:00:00:00:00:01', 'fe80::100:ff:fe00:1'],
  ])('%s → %s', (mac, want) => {
    expect(formatIpv6(linkLocalAddress(parseMac(mac)))).toBe(want);
    expect(linkLocalText(parseMac(mac))).toBe(want);
  });

  it('linkLocalText prints what formatIpv6(linkLocalAddress()) prints, for any MAC', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 48 - 1 }), (mac) => linkLocalText(mac) === formatIpv6(linkLocalAddress(mac))),
      { numRuns: 5000 },
    );
    const octets = fc.constantFrom(0, 1, 2, 3, 0xfd, 0xfe, 0xff);
    fc.assert(
      fc.property(fc.array(octets, { minLength: 6, maxLength: 6 }), (o) => {
        const mac = o.reduce<number>((n, x) => n * 256 + x, 0);
        return linkLocalText(mac) === formatIpv6(linkLocalAddress(mac));
      }),
      { numRuns: 5000 },
    );
  });

  it('the interface identifier is 64 bits with ff:fe in the middle', () => {
    expect(eui64InterfaceId(parseMac('34:56:78:9a:bc:de')).toString(16)).toBe('365678fffe9abcde');
  });

  it('an address in a /64 is the prefix plus the identifier', () => {
    expect(formatIpv6(eui64Address(parseCidr('2001:db8:1::/64', 6, 'x'), parseMac('42:00:00:00:01:02')))).toBe('2001:db8:1:0:4000:ff:fe00:102');
  });

  it('only a /64 has EUI-64 addresses', () => {
    expect(() => eui64Address(parseCidr('2001:db8::/48', 6, 'x'), 1)).toThrow(RangeError);
  });
});
