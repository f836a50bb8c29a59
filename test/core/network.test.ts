import { describe, expect, it } from 'vitest';
import { multicastGroup, networkDevices, networkMtu, networkOfDevice, parseNetworkId, parseUnderlay, planNetwork } from '../../src/core/network.js';

describe('network ids and device names', () => {
  it.each([
    ['1', 1],
    ['42', 42],
    ['16777215', 16777215],
  ])('accepts %s', (text, id) => {
    expect(parseNetworkId(text)).toBe(id);
  });
  it.each(['0', '16777216', '-1', '4.2', '0x2a', '', ' 42', '123456789'])('refuses %j', (text) => {
    expect(() => parseNetworkId(text)).toThrow(/invalid network id .*from 1 to 16777215/);
  });
  it.each([
    [1, 'ucbr1', 'ucvx1'],
    [42, 'ucbr42', 'ucvx42'],
    [16777215, 'ucbr16777215', 'ucvx16777215'],
  ])('network %i: bridge %s, VXLAN %s, both within 15 characters and mapped back', (id, bridge, vxlan) => {
    expect(networkDevices(id)).toEqual({ bridge, vxlan });
    expect(bridge.length).toBeLessThanOrEqual(15);
    expect(networkOfDevice(bridge)).toBe(id);
    expect(networkOfDevice(vxlan)).toBe(id);
  });
  it.each(['br0', 'ucbr0', 'ucbr042', 'ucbr99999999', 'uc0123456789n0', 'ucvx', 'xucbr4'])('%s is not a network device', (name) => {
    expect(networkOfDevice(name)).toBeNull();
  });
  it.each([
    [1, 'ff05::1'],
    [42, 'ff05::2a'],
    [0xffff, 'ff05::ffff'],
    [0x10000, 'ff05::1:0'],
    [16777215, 'ff05::ff:ffff'],
  ])('network %i floods to %s', (id, group) => {
    expect(multicastGroup(id)).toBe(group);
  });
});

describe('underlay settings', () => {
  it.each([
    [{ vxlanDev: 'eth1' }, { dev: 'eth1', local: null, peers: [], mtu: null, family: 6 }],
    [{ vxlanDev: 'eth1', vxlanLocal: 'fd00::1', vxlanMtu: '1500' }, { dev: 'eth1', local: 'fd00::1', peers: [], mtu: 1500, family: 6 }],
    [{ vxlanLocal: '10.0.0.1', vxlanPeers: '10.0.0.2, 10.0.0.3' }, { dev: null, local: '10.0.0.1', peers: ['10.0.0.2', '10.0.0.3'], mtu: null, family: 4 }],
    [{ vxlanPeers: 'fd00::2' }, { dev: null, local: null, peers: ['fd00::2'], mtu: null, family: 6 }],
  ])('%j', (s, want) => {
    expect(parseUnderlay(s)).toEqual(want);
  });
  it.each<[Record<string, string>, RegExp]>([
    [{ vxlanDev: 'a-very-long-device-name' }, /invalid vxlanDev/],
    [{ vxlanDev: 'eth1;reboot' }, /invalid vxlanDev/],
    [{ vxlanLocal: 'fd00::zz' }, /invalid vxlanLocal 'fd00::zz'/],
    [{ vxlanPeers: 'fd00::2,host3' }, /'host3' is not an IP address/],
    [{ vxlanLocal: '10.0.0.1', vxlanPeers: 'fd00::2' }, /all IPv6 or all IPv4/],
    [{ vxlanDev: 'eth1', vxlanLocal: '10.0.0.1' }, /multicast .* needs an IPv6 underlay/],
    [{ vxlanDev: 'eth1', vxlanMtu: '1279' }, /invalid vxlanMtu '1279': expected the guests' MTU in bytes, 1280 to 65535/],
    [{ vxlanDev: 'eth1', vxlanMtu: 'big' }, /invalid vxlanMtu/],
  ])('refuses %j', (s, re) => {
    expect(() => parseUnderlay(s)).toThrow(re);
  });
  it.each([
    [{ vxlanDev: 'eth1' }, 1500, 1430],
    [{ vxlanDev: 'eth1' }, 9000, 8930],
    [{ vxlanDev: 'eth1' }, null, 1430],
    [{ vxlanLocal: '10.0.0.1', vxlanPeers: '10.0.0.2' }, 1500, 1450],
    [{ vxlanDev: 'eth1', vxlanMtu: '1400' }, 9000, 1400],
  ])('guest MTU for %j over an underlay MTU of %s: %i', (s, underlayMtu, mtu) => {
    expect(networkMtu(parseUnderlay(s), underlayMtu)).toBe(mtu);
  });
});

describe('planNetwork', () => {
  it('multicast: uncloud group on the underlay device, UDP 4789, no peers', () => {
    const p = planNetwork(42, parseUnderlay({ vxlanDev: 'underlay' }), 1500);
    expect(p.addVxlan).toEqual(['link', 'add', 'ucvx42', 'mtu', '1430', 'type', 'vxlan', 'id', '42', 'dstport', '4789', 'group', 'ff05::2a', 'dev', 'underlay']);
    expect(p.addBridge).toEqual(['link', 'add', 'ucbr42', 'mtu', '1430', 'type', 'bridge']);
    expect(p.peerEntries).toEqual([]);
    expect(p.flood).toEqual({ group: 'ff05::2a' });
    expect(p.settle).toContainEqual(['link', 'set', 'ucvx42', 'master', 'ucbr42']);
  });
  it('static peers: no group, one all-zeros FDB entry per peer (head-end replication)', () => {
    const p = planNetwork(7, parseUnderlay({ vxlanLocal: 'fd00::1', vxlanPeers: 'fd00::2,fd00::3' }), null);
    expect(p.addVxlan).toEqual(['link', 'add', 'ucvx7', 'mtu', '1430', 'type', 'vxlan', 'id', '7', 'dstport', '4789', 'local', 'fd00::1']);
    expect(p.peerEntries).toEqual([
      ['fdb', 'append', '00:00:00:00:00:00', 'dev', 'ucvx7', 'dst', 'fd00::2'],
      ['fdb', 'append', '00:00:00:00:00:00', 'dev', 'ucvx7', 'dst', 'fd00::3'],
    ]);
  });
  it('multicast without an underlay device is refused, naming the setting', () => {
    expect(() => planNetwork(42, parseUnderlay({}), null)).toThrow(/network 42 floods to multicast group ff05::2a, which needs the underlay device: set vxlanDev/);
  });
});
