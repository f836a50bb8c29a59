/**
 * Across hosts, with real parts: three etcd members in namespaces of their own, two hypervisor namespaces
 * (h1, h2) on an IPv6 underlay, each with its own `uncloud-vm agent`, and one VXLAN network (42) that spans
 * them. Two real guests (one per host) boot in the first test and stay up through the failure tests that
 * follow, which run in order: an etcd member lost, the quorum lost, a hypervisor killed, a hypervisor cut off.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FAKE_QEMU } from '../helpers/cli.js';
import { type Cluster, hostSandbox, type Hypervisor, startCluster, until } from '../helpers/cluster.js';
import { type BootedVm, bootGuest, buildGuest } from '../helpers/guest.js';

const TTL_S = 4;
let c: Cluster;
let guest: { kernel: string; initrd: string };
let h1: Hypervisor;
let h2: Hypervisor;
const vms: Record<string, BootedVm> = {};
const macOf: Record<string, string> = {};

interface LeaseRow {
  mac: string;
  host: string;
  state: string;
  vm: { name: string } | null;
}
const macList = async (h: Hypervisor): Promise<LeaseRow[]> => {
  const r = await h.cli(['mac', 'list', '--json']);
  if (r.code !== 0) throw new Error(`mac list on ${h.name}: ${r.stderr}`);
  return JSON.parse(r.stdout);
};
const record = (h: Hypervisor, name: string) => JSON.parse(readFileSync(join(h.runDir, name, 'vm.json'), 'utf8'));
const qemuAlive = (h: Hypervisor, name: string): boolean => {
  try {
    process.kill(record(h, name).qemu.pid, 0);
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  guest = buildGuest();
  const t0 = Date.now();
  c = await startCluster({ ttlS: TTL_S });
  [h1, h2] = c.hosts as [Hypervisor, Hypervisor];
  await Promise.all([h1.startAgent(), h2.startAgent()]);
  console.log(`cluster up (3 etcd members, 2 hypervisors with agents): ${Date.now() - t0} ms`);
});
afterAll(async () => {
  await c?.remove();
});

describe('two hypervisors, one VXLAN network, one etcd pool', () => {
  it('a guest on each host: distinct MACs from the pool, the MTU that fits VXLAN, and they ping each other', async () => {
    const t0 = Date.now();
    vms.a = bootGuest(guest, hostSandbox(h1), h1.ns, 'vm-a', { append: 'uc.ip.eth0=10.42.0.1/24 uc.ping=10.42.0.2', args: ['--nic', 'network=42'] });
    vms.b = bootGuest(guest, hostSandbox(h2), h2.ns, 'vm-b', { append: 'uc.ip.eth0=10.42.0.2/24 uc.ping=10.42.0.1', args: ['--nic', 'network=42'] });
    await Promise.all([vms.a.waitSerial(/^UNCLOUD-PING \S+ (ok|fail)/m, 120_000), vms.b.waitSerial(/^UNCLOUD-PING \S+ (ok|fail)/m, 120_000)]);
    console.log(`two guests booted and pinging over VXLAN: ${Date.now() - t0} ms`);
    expect(vms.a.serial()).toMatch(/^UNCLOUD-PING 10\.42\.0\.2 ok/m);
    expect(vms.b.serial()).toMatch(/^UNCLOUD-PING 10\.42\.0\.1 ok/m);
    for (const [k, vm] of Object.entries(vms)) {
      const m = /^UNCLOUD-NIC eth0 (\S+) mtu=(\d+)/m.exec(vm.serial())!;
      macOf[k] = m[1]!;
      expect(m[2]).toBe('1430');
    }
    expect(macOf.a).not.toBe(macOf.b);
    // One pool: both hosts see both leases, each on its own host.
    for (const h of [h1, h2]) {
      const rows = await macList(h);
      expect(rows.map((r) => [r.vm?.name, r.mac, r.host])).toEqual(
        [['vm-a', macOf.a, 'h1'], ['vm-b', macOf.b, 'h2']].sort((x, y) => (x[1]! < y[1]! ? -1 : 1)),
      );
    }
    // The taps sit on network 42's bridge on each host.
    for (const [h, name] of [[h1, 'vm-a'], [h2, 'vm-b']] as const) {
      const net = JSON.parse((await h.cli(['network', 'show', '42', '--json'])).stdout);
      expect(net).toMatchObject({ vni: 42, group: 'ff05::2a', underlay: 'underlay', mtu: 1430, vms: [name], ports: [record(h, name).nics[0].tap] });
    }
  });
});
