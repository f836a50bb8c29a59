import { describe, expect, it } from 'vitest';
import { eui64Address, eui64InterfaceId, linkLocalAddress } from '../../src/core/eui64.js';
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
  ])('%s → %s', (mac, want) => {
    expect(formatIpv6(linkLocalAddress(parseMac(mac)))).toBe(want);
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
