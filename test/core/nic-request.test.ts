/** --nic text → NIC request by tables, and back with nicText. */
import { describe, expect, it } from 'vitest';
import { nicText, parseNic } from '../../src/core/nic-request.js';

describe('parseNic', () => {
  const g = { ip4: [], ip6: [], ip6Any: false };
  it.each([
    ['bridge=br1', { index: 0, bridge: 'br1', filter: true, ...g }],
    ['br2', { index: 0, bridge: 'br2', filter: true, ...g }],
    ['mac=42:00:00:00:00:AA', { index: 0, bridge: 'br0', mac: '42:00:00:00:00:aa', filter: true, ...g }],
    ['bridge=br1,mac=42-00-00-00-00-01', { index: 0, bridge: 'br1', mac: '42:00:00:00:00:01', filter: true, ...g }],
    ['bridge=br1,filter=off', { index: 0, bridge: 'br1', filter: false, ...g }],
    ['br1,ip4=192.0.2.7,ip4=198.51.100.0/24', { index: 0, bridge: 'br1', filter: true, ...g, ip4: ['192.0.2.7', '198.51.100.0/24'] }],
    ['br1,ip6=2001:DB8:7:0::/64,ip6=2001:0db8::0001', { index: 0, bridge: 'br1', filter: true, ...g, ip6: ['2001:db8:7::/64', '2001:db8::1'] }],
    ['br1,ip6any=on', { index: 0, bridge: 'br1', filter: true, ...g, ip6Any: true }],
    ['network=42', { index: 0, bridge: 'ucbr42', network: 42, filter: true, ...g }],
    ['network=16777215,mac=42:00:00:00:00:02', { index: 0, bridge: 'ucbr16777215', network: 16777215, mac: '42:00:00:00:00:02', filter: true, ...g }],
  ])('%s', (text, want) => {
    expect(parseNic(text, 0, 'br0')).toEqual(want);
  });
  it.each([
    ['br1,ip4=10.0.0.5/24', /host bits are set; give the network 10\.0\.0\.0\/24 or the address 10\.0\.0\.5/],
    ['br1,ip4=10.0.0.256', /expected an IPv4 address or prefix/],
    ['br1,ip4=2001:db8::1', /expected an IPv4 address or prefix/],
    ['br1,ip6=10.0.0.1', /expected an IPv6 address or prefix/],
    ['br1,ip6=2001:db8::/129', /prefix length must be 0 to 128/],
    ['br1,ip6=1:2:3:4:5:6:7:8:9', /expected an IPv6/],
    ['br1,ip6=1::2::3', /expected an IPv6/],
    ['br1,ip6any=yes', /ip6any is on or off/],
    ['br1,filter=off,ip4=10.0.0.5', /filter=off turns off/],
    ['br1,ip7=1', /unknown key 'ip7'; allowed: bridge, network, mac, filter, ip4, ip6, ip6any/],
  ])('refuses %s', (text, re) => {
    expect(() => parseNic(text, 0, 'br0')).toThrow(re);
  });
  it('nicText gives back what parseNic read', () => {
    const text = 'bridge=br1,mac=42:00:00:00:00:07,ip4=192.0.2.7,ip6=2001:db8:7::/64,ip6any=on';
    expect(nicText(parseNic(text, 0, 'br0'))).toBe(text);
    expect(nicText(parseNic('br2,filter=off', 0, 'br0'))).toBe('bridge=br2,filter=off');
    expect(nicText(parseNic('network=42,ip6any=on', 0, 'br0'))).toBe('network=42,ip6any=on');
  });
});
