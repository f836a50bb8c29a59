/**
 * Across hosts, with real parts: three etcd members in namespaces of their own, two hypervisor namespaces
 * (h1, h2) on an IPv6 underlay, each with its own `uncloud-vm agent`, and one VXLAN network (42) that spans
 * them. Two real guests (one per host) boot in the first test and stay up through the failure tests that
 * follow, which run in order: an etcd member lost, the quorum lost, a hypervisor killed, a hypervisor cut off.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
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

describe('failures', () => {
  beforeEach(() => onTestFailed(() => console.log(`agent on h1:\n${h1.agentLog}\nagent on h2:\n${h2.agentLog}`)));
  it('one etcd member killed: allocations on both hosts go on (quorum), the guests keep running; the member rejoins', async () => {
    const [e1] = c.members as [Cluster['members'][0]];
    await e1.kill();
    const t0 = Date.now();
    const runs = await Promise.all(
      [h1, h2].flatMap((h) => Array.from({ length: 4 }, (_, i) => h.cli(['mac', 'allocate', '--vm', `probe-${h.name}-${i}`]))),
    );
    const failed = runs.filter((r) => r.code !== 0);
    console.log(`e1 down: ${runs.length - failed.length}/${runs.length} allocations done in ${Date.now() - t0} ms, ${failed.length} failed`);
    expect(failed.map((r) => r.stderr)).toEqual([]);
    const probes = runs.map((r) => r.stdout.trim());
    expect(new Set([...probes, macOf.a, macOf.b]).size).toBe(probes.length + 2);
    expect(qemuAlive(h1, 'vm-a') && qemuAlive(h2, 'vm-b')).toBe(true);

    const t1 = Date.now();
    await e1.restart();
    console.log(`e1 rejoined in ${Date.now() - t1} ms`);
    expect(c.etcdctl('member', 'list').match(/, started, /g)).toHaveLength(3);
    // The rejoined member has the data: a read from it alone sees every probe.
    const onE1 = JSON.parse(c.etcdctl('--endpoints', e1.endpoint, 'get', '--prefix', '/uncloud-vm/macs/', '--keys-only', '-w', 'json')).kvs.length;
    expect(onE1).toBe(probes.length + 2);
    for (const mac of probes) expect((await h1.cli(['mac', 'release', mac])).code).toBe(0);
  });

  it('two members down (no quorum): start fails naming the endpoints, the guests keep running; quorum back, every lease is there', async () => {
    const [e1, e2] = c.members as [Cluster['members'][0], Cluster['members'][0]];
    const logFrom = new Map([h1, h2].map((h) => [h, h.agentLog.length]));
    await Promise.all([e1.kill(), e2.kill()]);
    const t0 = Date.now();
    const r = await h1.cli(['start', '--name', 'nq', '--accel', 'tcg', '--memory', '64', '--nic', 'network=42'], { env: { UNCLOUD_VM_QEMU: FAKE_QEMU } });
    console.log(`no quorum: start failed after ${Date.now() - t0} ms: ${r.stderr.trim()}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^uncloud-vm: etcd store \[fd00::e1\]:2379,\[fd00::e2\]:2379,\[fd00::e3\]:2379\/uncloud-vm: .+ failed: /m);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    await until('agents notice', () => /etcd unreachable/.test(h1.agentLog) && /etcd unreachable/.test(h2.agentLog), 30_000);
    // Longer than the TTL without etcd: the guests run on.
    await new Promise((res) => setTimeout(res, (TTL_S + 1) * 1000));
    expect(qemuAlive(h1, 'vm-a') && qemuAlive(h2, 'vm-b')).toBe(true);

    await Promise.all([e1.restart(), e2.restart()]);
    const whole = (rows: LeaseRow[]) =>
      rows.some((l) => l.mac === macOf.a && l.host === 'h1' && l.vm?.name === 'vm-a') && rows.some((l) => l.mac === macOf.b && l.host === 'h2' && l.vm?.name === 'vm-b');
    await until('mac list whole again', async () => whole(await macList(h1).catch(() => [])), 30_000);
    // The agents go on: the keep-alive resumes, or a new lease carries the VMs' keys again.
    await until('agents back on a live lease', () => [h1, h2].every((h) => /keep-alive resumed|after a lost lease/.test(h.agentLog.slice(logFrom.get(h)))), 30_000);
    for (const h of [h1, h2]) console.log(`agent on ${h.name} since the quorum was lost:\n${h.agentLog.slice(logFrom.get(h)).trim()}`);
    // Longer than the TTL after that: the keys stand (a key left on the lost lease would have expired).
    await new Promise((res) => setTimeout(res, (TTL_S + 2) * 1000));
    expect((await macList(h1)).map((l) => l.mac).sort()).toEqual([macOf.a, macOf.b].sort());
    expect((await macList(h2)).find((l) => l.mac === macOf.b)?.state).toBe('live');
    // The failed start held nothing and left no run dir behind.
    expect(await h1.cli(['status', 'nq'])).toMatchObject({ code: 1 });
  });

  it('a hypervisor killed: after the TTL its leases return to the pool, and the cursor does not hand them out again at once', async () => {
    const pool = async () => JSON.parse((await h2.cli(['mac', 'pool', '--json'])).stdout) as { held: number; cursor: string; byHost: Record<string, number> };
    expect((await pool()).byHost).toEqual({ h1: 1, h2: 1 });
    expect(h1.kill()).toBeGreaterThanOrEqual(3); // agent, launcher, qemu
    const t0 = Date.now();
    await until('h1 leases expired', async () => !(await macList(h2)).some((l) => l.host === 'h1'), (TTL_S + 20) * 1000);
    console.log(`h1 killed: its lease returned to the pool after ${Date.now() - t0} ms (TTL ${TTL_S} s)`);
    const after = await pool();
    expect(after.byHost).toEqual({ h2: 1 });
    // Freed, but behind the cursor: the next allocations get fresh addresses, not the dead VM's.
    const next = await Promise.all([1, 2, 3].map((i) => h2.cli(['mac', 'allocate', '--vm', `after-${i}`])));
    const got = next.map((r) => r.stdout.trim());
    expect(got).not.toContain(macOf.a);
    expect(got.every((m) => m >= after.cursor)).toBe(true);
    for (const m of got) await h2.cli(['mac', 'release', m]);
    // vm-b on h2 never noticed.
    expect(qemuAlive(h2, 'vm-b')).toBe(true);
    // h1 comes back: a new agent; the dead VM's run dir is gc'ed.
    await h1.startAgent();
    expect((await h1.cli(['gc'])).stdout).toMatch(/removed run dir vm-a/);
  });

  it('a hypervisor cut off longer than the TTL while its VM runs: another host takes the MAC meanwhile; back, the conflict is loud and the MAC is not handed out again', async () => {
    const macB = macOf.b!;
    h2.cut();
    const t0 = Date.now();
    await until('h2 unreachable', () => /etcd unreachable/.test(h2.agentLog.split('keep-alive resumed').pop()!), 30_000);
    await until("h2's lease expired in etcd", async () => !(await macList(h1)).some((l) => l.mac === macB), (TTL_S + 20) * 1000);
    console.log(`h2 cut off: its VM's key expired ${Date.now() - t0} ms later (TTL ${TTL_S} s)`);
    // Meanwhile h1 asks for exactly that address (the only way to get it: it is behind the cursor).
    let taker: import('node:child_process').ChildProcess | undefined;
    const takerRun = h1.cli(['start', '--name', 'taker', '--accel', 'tcg', '--memory', '64', '--nic', `network=42,mac=${macB}`], {
      env: { UNCLOUD_VM_QEMU: FAKE_QEMU, FAKE_QEMU_SLEEP: '600' },
      onSpawn: (ch) => (taker = ch),
    });
    await until('taker holds the MAC', async () => (await macList(h1)).some((l) => l.mac === macB && l.vm?.name === 'taker'), 30_000);
    expect(qemuAlive(h2, 'vm-b')).toBe(true);

    h2.reconnect();
    const conflict = new RegExp(`CONFLICT: MAC ${macB} is used by running VM vm-b on host h2 but held by .*taker.*h1`);
    await until("h2's agent reports the conflict", () => conflict.test(h2.agentLog), 30_000);
    for (const h of [h1, h2]) {
      const r = await h.cli(['mac', 'list', '--json']);
      expect(r.stderr).toMatch(conflict);
      expect(JSON.parse(r.stdout).find((l: LeaseRow) => l.mac === macB)).toMatchObject({ state: 'conflict', vm: { name: 'taker' }, host: 'h1' });
    }
    // The record stands across both agents' periodic passes (the taker's host must not clear it).
    const conflictKey = `/uncloud-vm/conflicts/${macB.replaceAll(':', '')}`;
    for (let i = 0; i < 10; i++) {
      expect(c.etcdctl('get', conflictKey, '--print-value-only'), `sample ${i}`).toMatch(/"host":"h2"/);
      await new Promise((res) => setTimeout(res, 500));
    }
    // The taker stops: the address is still not handed out; h2's agent takes its VM's key back.
    taker!.kill('SIGTERM');
    expect((await takerRun).code).toBe(0);
    const fresh = await Promise.all([1, 2, 3].map((i) => h1.cli(['mac', 'allocate', '--vm', `fresh-${i}`])));
    expect(fresh.map((r) => r.stdout.trim())).not.toContain(macB);
    await until('vm-b holds its MAC again', async () => {
      const rows = await macList(h1);
      return rows.some((l) => l.mac === macB && l.vm?.name === 'vm-b' && l.host === 'h2' && l.state === 'remote');
    }, 30_000);
    expect((await h2.cli(['mac', 'list'])).stderr).not.toMatch(/CONFLICT/);
    for (const r of fresh) await h1.cli(['mac', 'release', r.stdout.trim()]);
    expect(qemuAlive(h2, 'vm-b')).toBe(true);
  });
});
