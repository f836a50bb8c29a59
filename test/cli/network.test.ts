/**
 * VM networks on one host, with a fake qemu: the VXLAN device and bridge of a network are made once however
 * many starts race for them, stay while VMs use them, and `network rm` removes them only after the last VM.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, waitFor } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';

const fake = fakeQemuEnvironment({ bridges: [], sandboxPerFile: true, env: { UNCLOUD_VM_VXLAN_DEV: 'underlay', FAKE_QEMU_SLEEP: '600' } });
beforeAll(() => {
  // The underlay: one end of a veth pair with an IPv6 address, as a host's uplink.
  fake.ns.ip('link', 'add', 'underlay', 'type', 'veth', 'peer', 'name', 'underlay-peer');
  fake.ns.ip('addr', 'add', 'fd00::1/64', 'dev', 'underlay', 'nodad');
  fake.ns.ip('link', 'set', 'underlay', 'up');
  fake.ns.ip('link', 'set', 'underlay-peer', 'up');
});
const { run } = fake;
interface Link {
  ifname: string;
  ifindex: number;
  master?: string;
  mtu: number;
  operstate: string;
  linkinfo?: { info_kind: string; info_data?: { id?: number; group6?: string; port?: number } };
}
const link = (name: string): Link | undefined => (JSON.parse(fake.ns.ip('-d', '-j', 'link', 'show')) as Link[]).find((l) => l.ifname === name);

describe('VM networks on a host', () => {
  it('8 concurrent starts on network 42: the VXLAN device and bridge are made once and stay while a VM uses them; rm after the last VM removes them', async () => {
    const children: import('node:child_process').ChildProcess[] = [];
    const runs = Array.from({ length: 8 }, (_, i) =>
      cli(['start', '--name', `n${i}`, '--accel', 'tcg', '--memory', '64', '--nic', 'network=42'], {
        env: fake.sb.env,
        netns: fake.ns.name,
        onSpawn: (c) => children.push(c),
      }),
    );
    try {
      let seen = '';
      await waitFor('8 VMs on network 42', async () => {
        const r = await run(['network', 'show', '42', '--json']);
        seen = r.stdout + r.stderr;
        return r.code === 0 && (JSON.parse(r.stdout) as { vms: string[] }).vms.length === 8;
      }, 60_000).catch((e) => {
        throw new Error(`${(e as Error).message}: ${seen}`);
      });
      const vx = link('ucvx42')!;
      const br = link('ucbr42')!;
      expect(vx.linkinfo).toMatchObject({ info_kind: 'vxlan', info_data: { id: 42, group6: 'ff05::2a', port: 4789 } });
      expect(vx.master).toBe('ucbr42');
      expect(br.linkinfo?.info_kind).toBe('bridge');
      expect([vx.mtu, br.mtu]).toEqual([1430, 1430]);
      const shown = JSON.parse((await run(['network', 'show', '42', '--json'])).stdout);
      expect(shown).toMatchObject({ id: 42, bridge: 'ucbr42', vxlan: 'ucvx42', vni: 42, group: 'ff05::2a', peers: [], underlay: 'underlay', mtu: 1430, up: true });
      expect(shown.vms).toEqual(['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7']);

      // In use: refused, nothing removed.
      const rm = await run(['network', 'rm', '42']);
      expect(rm.code).toBe(1);
      expect(rm.stderr).toMatch(/^uncloud-vm: network 42 is in use \(VM n0, n1, n2, n3, n4, n5, n6, n7\); stop its VMs first$/m);
      expect(link('ucvx42')?.ifindex).toBe(vx.ifindex);
      expect(link('ucbr42')?.ifindex).toBe(br.ifindex);

      for (const c of children.splice(0, 7)) c.kill('SIGTERM');
      const done = await Promise.all(runs.slice(0, 7));
      for (const r of done) expect(r.code, r.stderr).toBe(0);
      // The last VM still runs: the devices stay, the same ones.
      expect((await run(['network', 'rm', '42'])).stderr).toMatch(/in use \(VM n7\)/);
      expect(link('ucvx42')?.ifindex).toBe(vx.ifindex);
      children[0]!.kill('SIGTERM');
      const last = await runs[7]!;
      expect(last.code, last.stderr).toBe(0);

      // Made once: across all 8 starts, each device is reported created exactly once.
      const stderr = [...done, last].map((r) => r.stderr).join('');
      expect(stderr.match(/network 42: created .*ucvx42/g)).toHaveLength(1);
      expect(stderr.match(/network 42: created .*ucbr42/g)).toHaveLength(1);
      expect(stderr).toMatch(/MTU 1430/);
      // The VM ended; the network did not.
      expect(link('ucbr42')?.ifindex).toBe(br.ifindex);
      const rm2 = await run(['network', 'rm', '42']);
      expect(rm2.code, rm2.stderr).toBe(0);
      expect(rm2.stderr).toBe('uncloud-vm: network 42: removed ucvx42 and ucbr42\n');
      expect(link('ucvx42')).toBeUndefined();
      expect(link('ucbr42')).toBeUndefined();
      expect((await run(['network', 'list'])).stdout).toBe('no network exists on this host\n');
    } finally {
      // Launchers and the fake qemus they started (which hold the launchers' stderr open).
      fake.ns.killAll();
      await Promise.all(runs);
    }
  });

  it('network rm racing 6 starts on network 43: every start runs, on a network that exists; rm succeeds only while no VM has claimed it', async () => {
    const children: import('node:child_process').ChildProcess[] = [];
    const ended: string[] = [];
    const runs = Array.from({ length: 6 }, (_, i) =>
      cli(['start', '--name', `race${i}`, '--accel', 'tcg', '--memory', '64', '--nic', 'network=43'], {
        env: fake.sb.env,
        netns: fake.ns.name,
        onSpawn: (c) => children.push(c),
      }).then((r) => {
        ended.push(`race${i} ended (${r.code}): ${r.stderr}`);
        return r;
      }),
    );
    let racing = true;
    const verdicts = new Set<string>();
    const rms = (async () => {
      while (racing) {
        const r = await run(['network', 'rm', '43']);
        verdicts.add(r.code === 0 ? 'removed' : r.stderr.match(/does not exist|is in use/)?.[0] ?? r.stderr);
      }
    })();
    try {
      await waitFor('6 VMs running on network 43', async () => {
        if (ended.length > 0) throw new Error(ended.join('\n'));
        const r = await run(['network', 'show', '43', '--json']);
        return r.code === 0 && (JSON.parse(r.stdout) as { vms: string[] }).vms.length === 6;
      }, 60_000);
      racing = false;
      await rms;
      // Whatever rm did meanwhile, the VMs' network is whole: the VXLAN device on the bridge, both up.
      expect(link('ucvx43')?.master).toBe('ucbr43');
      expect([link('ucvx43')?.operstate, link('ucbr43')?.linkinfo?.info_kind]).toEqual(['UNKNOWN', 'bridge']);
      expect([...verdicts].every((v) => ['removed', 'does not exist', 'is in use'].includes(v)), [...verdicts].join('; ')).toBe(true);
      expect(ended).toEqual([]);
      for (const c of children) c.kill('SIGTERM');
      for (const r of await Promise.all(runs)) expect(r.code, r.stderr).toBe(0);
    } finally {
      racing = false;
      fake.ns.killAll();
      await Promise.all(runs);
    }
    expect((await run(['network', 'rm', '43'])).code).toBe(0);
    expect(JSON.parse((await run(['mac', 'list', '--json'])).stdout)).toEqual([]);
  });

  it('the guests get the MTU that fits the underlay (host_mtu); a start reuses the network another start made', async () => {
    const first = await run(['start', '--dry-run', '--json', '--accel', 'tcg', '--memory', '64', '--nic', 'network=7'], { UNCLOUD_VM_VXLAN_MTU: '1400' });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/network 7: start would create bridge ucbr7 and VXLAN ucvx7 \(VNI 7, multicast ff05::7, MTU 1400\)/);
    expect(JSON.parse(first.stdout).argv.join(' ')).toMatch(/mac=42:00:00:00:00:\w\w,host_mtu=1400/);
    expect(link('ucbr7')).toBeUndefined();
    const a = await run(['start', '--accel', 'tcg', '--memory', '64', '--nic', 'network=7'], { UNCLOUD_VM_VXLAN_MTU: '1400', FAKE_QEMU_SLEEP: '0' });
    expect(a.code, a.stderr).toBe(0);
    expect(a.stderr).toMatch(/network 7: created ucvx7 and ucbr7 \(VNI 7, multicast ff05::7, MTU 1400\)/);
    // A later start with other settings takes the network as it is, with its MTU.
    const b = await run(['start', '--dry-run', '--json', '--accel', 'tcg', '--memory', '64', '--nic', 'network=7']);
    expect(b.stderr).not.toMatch(/would create/);
    expect(JSON.parse(b.stdout).argv.join(' ')).toMatch(/host_mtu=1400/);
    // A tap on the bridge (a VM of another tool, or one whose record is gone) also keeps the network.
    fake.ns.ip('tuntap', 'add', 'uc0123456789n0', 'mode', 'tap');
    fake.ns.ip('link', 'set', 'uc0123456789n0', 'master', 'ucbr7');
    expect((await run(['network', 'rm', '7'])).stderr).toMatch(/network 7 is in use \(ports uc0123456789n0\)/);
    fake.ns.ip('link', 'delete', 'uc0123456789n0');
    expect((await run(['network', 'rm', '7'])).code).toBe(0);
  });

  it('static peers instead of multicast: one all-zeros FDB entry per peer; a foreign device under our name is refused', async () => {
    const env = { UNCLOUD_VM_VXLAN_PEERS: 'fd00::2,fd00::3', UNCLOUD_VM_VXLAN_LOCAL: 'fd00::1', FAKE_QEMU_SLEEP: '0' };
    const r = await run(['start', '--accel', 'tcg', '--memory', '64', '--nic', 'network=9'], env);
    expect(r.code, r.stderr).toBe(0);
    const shown = JSON.parse((await run(['network', 'show', '9', '--json'])).stdout);
    expect(shown).toMatchObject({ vni: 9, group: null, peers: ['fd00::2', 'fd00::3'], local: 'fd00::1', mtu: 1430 });
    expect((await run(['network', 'rm', '9'])).code).toBe(0);

    fake.ns.ip('link', 'add', 'ucvx5', 'type', 'vxlan', 'id', '55', 'dstport', '4789', 'local', 'fd00::1');
    const bad = await run(['start', '--accel', 'tcg', '--memory', '64', '--nic', 'network=5'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^uncloud-vm: network 5: device ucvx5 exists but is not VXLAN with VNI 5; remove it or use another network id$/m);
    expect(link('ucbr5')).toBeUndefined();
    expect(JSON.parse((await run(['mac', 'list', '--json'])).stdout)).toEqual([]);
    fake.ns.ip('link', 'delete', 'ucvx5');
  });
});
