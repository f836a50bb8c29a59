/** A bridge's network as seen at start: the /64s from config, else the bridge's own global /64s (from if_inet6). */
import { describe, expect, it } from 'vitest';
import { bridgeFacts, interfacePrefixes64 } from '../../src/system/nic-addresses.js';

// /proc/net/if_inet6: address, ifindex, prefix length (hex), scope (hex), flags, name.
const table = [
  '20010db8000a00000000000000000001 05 40 00 80     br1',
  '20010db8000a00000000000000000002 05 40 00 80     br1', // the same /64 again
  '20010db8000b00000000000000000001 05 30 00 80     br1', // a /48: not a SLAAC network
  'fe800000000000000000000000000001 05 40 20 80     br1', // link scope
  '20010db8000c00000000000000000001 06 40 00 80     br10', // another interface
  '',
].join('\n');

describe('interfacePrefixes64', () => {
  it('the global-scope /64s of that interface only, each once', () => {
    expect(interfacePrefixes64('br1', table)).toEqual(['2001:db8:a::/64']);
    expect(interfacePrefixes64('br10', table)).toEqual(['2001:db8:c::/64']);
    expect(interfacePrefixes64('br0', table)).toEqual([]);
    expect(interfacePrefixes64('br1', '')).toEqual([]);
  });
});

describe('bridgeFacts', () => {
  it('configured prefixes win, with the configured ipv6Only', () => {
    expect(bridgeFacts('uc-no-such-br', { 'uc-no-such-br': { prefixes: ['2001:db8:1::/64'], ipv6Only: true } })).toEqual({
      prefixes: ['2001:db8:1::/64'],
      source: 'config',
      ipv6Only: true,
    });
  });
  it('a bridge with no configured prefix and none of its own: none', () => {
    expect(bridgeFacts('uc-no-such-br', { 'uc-no-such-br': { prefixes: [], ipv6Only: true } })).toEqual({ prefixes: [], source: 'none', ipv6Only: true });
    expect(bridgeFacts('uc-no-such-br', {})).toEqual({ prefixes: [], source: 'none', ipv6Only: false });
  });
});
