/** The allowed set of a NIC and the addresses shown for it, by table; the config's "bridges". */
import { describe, expect, it } from 'vitest';
import { parseMac } from '../../src/core/mac.js';
import { type BridgeFacts, nicAddresses, parseBridges } from '../../src/core/nic-allowed.js';
import { guardOptions, parseNic } from '../../src/core/nic-request.js';

const MAC = parseMac('42:00:00:00:01:02');
const LL = 'fe80::4000:ff:fe00:102';
const none: BridgeFacts = { prefixes: [], source: 'none', ipv6Only: false };
const net64: BridgeFacts = { prefixes: ['2001:db8:1::/64'], source: 'config', ipv6Only: false };
const v6only: BridgeFacts = { ...net64, ipv6Only: true };
const on = (nic = '') => guardOptions(parseNic(`br0${nic}`, 0, 'br0'));

describe('nicAddresses: the addresses shown and the allowed set', () => {
  it.each([
    ['no prefix: link-local and :: only; IPv4 not address-filtered', on(), none, { eui64: [], ipv6: ['::', LL], ipv4: 'any' }],
    [
      'a configured /64: its EUI-64 address',
      on(),
      net64,
      { eui64: ['2001:db8:1:0:4000:ff:fe00:102'], ipv6: ['::', '2001:db8:1:0:4000:ff:fe00:102', LL], ipv4: 'any' },
    ],
    ['ip6any: the whole /64 instead', on(',ip6any=on'), net64, { eui64: ['2001:db8:1:0:4000:ff:fe00:102'], ipv6: ['::', '2001:db8:1::/64', LL], ipv4: 'any' }],
    [
      'a routed /64 and an extra address; an address inside the network /64 is covered by ip6any',
      on(',ip6=2001:db8:7::/64,ip6=2001:db8:1::9,ip6any=on'),
      net64,
      { eui64: ['2001:db8:1:0:4000:ff:fe00:102'], ipv6: ['::', '2001:db8:1::/64', '2001:db8:7::/64', LL], ipv4: 'any' },
    ],
    ['IPv6-only network, no ip4: IPv4 dropped', on(), v6only, { eui64: ['2001:db8:1:0:4000:ff:fe00:102'], ipv4: 'none' }],
    ['ip4 given: those only, even on an IPv6-only network', on(',ip4=192.0.2.7,ip4=198.51.100.0/24,ip4=198.51.100.9'), v6only, { ipv4: ['192.0.2.7', '198.51.100.0/24'] }],
  ])('%s', (_title, opts, net, want) => {
    const a = nicAddresses(MAC, opts, net);
    expect(a.linkLocal).toBe(LL);
    if ('eui64' in want) expect(a.eui64).toEqual(want.eui64);
    if ('ipv6' in want) expect(a.allowed!.ipv6).toEqual(want.ipv6);
    expect(a.allowed!.ipv4).toEqual(want.ipv4);
  });

  it('filter=off: addresses shown, no allowed set', () => {
    const a = nicAddresses(MAC, guardOptions(parseNic('br0,filter=off', 0, 'br0')), net64);
    expect(a).toEqual({ linkLocal: LL, eui64: ['2001:db8:1:0:4000:ff:fe00:102'], prefixSource: 'config', guard: 'off', allowed: null });
  });
});

describe('parseBridges (config "bridges")', () => {
  it('reads prefixes and ipv6Only, canonical', () => {
    expect(parseBridges({ br0: { prefixes: ['2001:DB8:1:0::/64'], ipv6Only: true }, br1: {} }, 'c')).toEqual({
      br0: { prefixes: ['2001:db8:1::/64'], ipv6Only: true },
      br1: { prefixes: [], ipv6Only: false },
    });
  });
  it.each([
    [[], /'bridges' must be an object/],
    [{ 'b r': {} }, /not a bridge name/],
    [{ br0: { prefixes: '2001:db8::/64' } }, /prefixes must be a list/],
    [{ br0: { prefixes: ['2001:db8::/48'] } }, /must be a \/64/],
    [{ br0: { prefixes: ['2001:db8::1/64'] } }, /host bits are set/],
    [{ br0: { ipv6Only: 'yes' } }, /ipv6Only must be true or false/],
    [{ br0: { prefix: [] } }, /unknown key 'prefix'; allowed: prefixes, ipv6Only/],
  ])('refuses %j', (data, re) => {
    expect(() => parseBridges(data, 'c')).toThrow(re);
  });
});
