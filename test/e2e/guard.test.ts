/**
 * The NIC guard with real guests on a bridge in a namespace. Honest traffic (link-local, EUI-64 in the
 * configured /64, the given IPv4 address) passes; a guest sending from other addresses reaches nobody; a
 * guest's DHCP server leases nothing to its peer with the guard on and does with it off; on a bridge declared
 * IPv6-only, IPv4 is dropped and IPv6 passes. After the VMs end, none of their guard is left.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { eui64Address, linkLocalAddress } from '../../src/core/eui64.js';
import { formatIpv6, parseCidr } from '../../src/core/ip.js';
import { parseMac } from '../../src/core/mac.js';
import { GUARD_TABLE, guardedIfaces } from '../../src/core/nic-guard-rules.js';
import { cli } from '../helpers/cli.js';
import { guestEnvironment } from '../helpers/e2e.js';
import { type BootedVm, bootGuest } from '../helpers/guest.js';

const e = guestEnvironment(['br0', 'br1']);
const PREFIX = 'fd42:0:0:1::/64';

beforeEach(() => {
  // br0: one IPv6 /64, IPv4 allowed; br1: IPv6-only.
  const config = join(e.sb.stateDir, '..', 'config.json');
  writeFileSync(config, JSON.stringify({ bridges: { br0: { prefixes: [PREFIX] }, br1: { prefixes: ['fd42:0:0:2::/64'], ipv6Only: true } } }));
  e.sb.env.UNCLOUD_VM_CONFIG = config;
});

const ll = (mac: string) => formatIpv6(linkLocalAddress(parseMac(mac)));
const eui = (mac: string, prefix = PREFIX) => formatIpv6(eui64Address(parseCidr(prefix, 6, 'x'), parseMac(mac)));

function guarded(): string[] {
  const r = spawnSync('ip', ['netns', 'exec', e.ns.name, 'nft', '-j', 'list', 'table', 'bridge', GUARD_TABLE], { encoding: 'utf8' });
  return r.status === 0 ? guardedIfaces(r.stdout) : [];
}

const pings = (vm: BootedVm, peers: string[]) =>
  Promise.all(peers.map(async (p) => [p, (await vm.waitSerial(new RegExp(`^UNCLOUD-PING ${p.replaceAll('.', '\\.')} (ok|fail)`, 'm'), 180_000))[1]]));

async function stopAll(vms: BootedVm[]): Promise<void> {
  for (const vm of vms) vm.child().kill('SIGTERM');
  const results = await Promise.all(vms.map((v) => v.done));
  for (const r of results) expect(r.code, r.stderr).toBe(0);
  // ifdown took each NIC's guard away: no element of these VMs is left in the shared table.
  expect(guarded()).toEqual([]);
}

describe('the NIC guard with real guests', () => {
  it('honest IPv6 (link-local, EUI-64) and the allowed IPv4 pass; other source addresses reach nobody', async () => {
    const [a, b, c] = ['42:00:00:00:0a:01', '42:00:00:00:0a:02', '42:00:00:00:0a:03'];
    const peer = bootGuest(e.guest, e.sb, e.ns.name, 'peer', {
      append: `uc.ip.eth0=10.90.0.1/24 uc.ip6.eth0=${eui(a)}/64`,
      args: ['--nic', `br0,mac=${a},ip4=10.90.0.1`],
    });
    await peer.waitSerial(/^UNCLOUD-READY/m, 180_000);
    // What status shows is what the guest's SLAAC would make, and what the guard lets through.
    const st = JSON.parse((await cli(['status', 'peer', '--json'], { env: e.sb.env, netns: e.ns.name })).stdout);
    expect(st.nics[0].addresses).toMatchObject({ linkLocal: ll(a), eui64: [eui(a)], guard: 'on', allowed: { ipv6: ['::', eui(a), ll(a)], ipv4: ['10.90.0.1'] } });
    expect(guarded()).toEqual([st.nics[0].tap]);

    const honest = bootGuest(e.guest, e.sb, e.ns.name, 'honest', {
      append: `uc.ip.eth0=10.90.0.2/24 uc.ip6.eth0=${eui(b)}/64 uc.ping=10.90.0.1,${eui(a)},${ll(a)}`,
      args: ['--nic', `br0,mac=${b},ip4=10.90.0.2`],
    });
    // The liar's guard allows 10.90.0.3 and its EUI-64 address; it uses others.
    const liar = bootGuest(e.guest, e.sb, e.ns.name, 'liar', {
      append: `uc.ip.eth0=10.90.0.9/24 uc.ip6.eth0=fd42:0:0:1::99/64 uc.ping=10.90.0.1,${eui(a)} uc.pingtries=8`,
      args: ['--nic', `br0,mac=${c},ip4=10.90.0.3`],
    });
    expect(await pings(honest, ['10.90.0.1', eui(a), ll(a)])).toEqual([
      ['10.90.0.1', 'ok'],
      [eui(a), 'ok'],
      [ll(a), 'ok'],
    ]);
    expect(await pings(liar, ['10.90.0.1', eui(a)])).toEqual([
      ['10.90.0.1', 'fail'],
      [eui(a), 'fail'],
    ]);
    await stopAll([peer, honest, liar]);
  });

  it.each([
    ['on', 'fail'],
    ['off', 'ok'],
  ])("a guest's DHCP server, guard %s: its peer's lease request → %s", async (filter, want) => {
    const server = bootGuest(e.guest, e.sb, e.ns.name, `dhcpd-${filter}`, {
      append: 'uc.ip.eth0=10.91.0.1/24 uc.dhcpd=10.91.0.100-10.91.0.110',
      args: ['--nic', `br0,filter=${filter}`],
    });
    await server.waitSerial(/^UNCLOUD-DHCPD/m, 180_000);
    const client = bootGuest(e.guest, e.sb, e.ns.name, `dhcpc-${filter}`, { append: 'uc.dhcpc=10' });
    const m = await client.waitSerial(/^UNCLOUD-DHCP (ok 10\.91\.0\.1\d\d|fail)/m, 180_000);
    expect(m[1]!.split(' ')[0]).toBe(want);
    await stopAll([server, client]);
  });

  it('on a bridge declared IPv6-only, IPv4 is dropped and IPv6 passes; status says so', async () => {
    const [a, b] = ['42:00:00:00:0b:01', '42:00:00:00:0b:02'];
    const one = bootGuest(e.guest, e.sb, e.ns.name, 'v6one', { append: 'uc.ip.eth0=10.92.0.1/24', args: ['--nic', `br1,mac=${a}`] });
    await one.waitSerial(/^UNCLOUD-READY/m, 180_000);
    const st = await cli(['status', 'v6one'], { env: e.sb.env, netns: e.ns.name });
    expect(st.stdout).toMatch(/IPv4\s+dropped \(IPv6-only network\)/);
    const two = bootGuest(e.guest, e.sb, e.ns.name, 'v6two', {
      append: `uc.ip.eth0=10.92.0.2/24 uc.ping=${ll(a)},10.92.0.1 uc.pingtries=15`,
      args: ['--nic', `br1,mac=${b}`],
    });
    expect(await pings(two, [ll(a), '10.92.0.1']), two.serial()).toEqual([
      [ll(a), 'ok'],
      ['10.92.0.1', 'fail'],
    ]);
    await stopAll([one, two]);
  }, 300_000);

  it('killed with -9 (qemu, or qemu and its launcher): the launcher, or else gc, removes the guard by tap name', async () => {
    // Start from a clean table: a failed test before this one is cleaned up with SIGKILLs, which leave guards.
    await cli(['gc'], { env: e.sb.env, netns: e.ns.name });
    const one = bootGuest(e.guest, e.sb, e.ns.name, 'kill-qemu');
    const two = bootGuest(e.guest, e.sb, e.ns.name, 'kill-both');
    await Promise.all([one.waitSerial(/^UNCLOUD-READY/m, 180_000), two.waitSerial(/^UNCLOUD-READY/m, 180_000)]);
    const rec = async (name: string) => JSON.parse((await cli(['status', name, '--json'], { env: e.sb.env, netns: e.ns.name })).stdout);
    const [r1, r2] = [await rec('kill-qemu'), await rec('kill-both')];
    const [tap1, tap2] = [r1.nics[0].tap, r2.nics[0].tap];
    expect(guarded().sort()).toEqual([tap1, tap2].sort());
    // No ifdown runs after a SIGKILL.
    process.kill(r1.pid, 'SIGKILL');
    expect((await one.done).code).toBe(137);
    expect(guarded()).toEqual([tap2]);
    process.kill(r2.launcherPid, 'SIGKILL');
    process.kill(r2.pid, 'SIGKILL');
    await two.done;
    expect(guarded()).toEqual([tap2]);
    const gc = await cli(['gc'], { env: e.sb.env, netns: e.ns.name });
    expect(gc.code, gc.stderr).toBe(0);
    expect(guarded()).toEqual([]);
  });
});
