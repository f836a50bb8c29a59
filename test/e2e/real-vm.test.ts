/**
 * The truth: real qemu (TCG) boots the test guest through `uncloud-vm start`, on taps attached to bridges in a
 * network namespace made for this file. Checks what a fake qemu cannot: the guest sees the MAC we leased, the
 * tap is on the bridge with an fe: MAC, two guests talk, and nothing is left behind however a VM ends.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, waitFor } from '../helpers/cli.js';
import { guestEnvironment } from '../helpers/e2e.js';
import { bootGuest } from '../helpers/guest.js';
import { qmpCommand } from '../helpers/qmp-raw.js';

const e = guestEnvironment(['br0', 'br1']);

interface LinkInfo {
  ifname: string;
  address: string;
  master?: string;
}
const links = (): LinkInfo[] => JSON.parse(e.ns.ip('-j', 'link', 'show'));
const taps = () => links().filter((l) => l.ifname.startsWith('uc'));
const leases = async () => JSON.parse((await cli(['mac', 'list', '--json'], { env: e.sb.env })).stdout) as { mac: string; vm: { name: string }; nic: number }[];
const vmLeases = async (name: string) => (await leases()).filter((l) => l.vm?.name === name).sort((a, b) => a.nic - b.nic);
const nicLines = (serial: string) => [...serial.matchAll(/^UNCLOUD-NIC (\S+) (\S+)/gm)].map((m) => ({ dev: m[1]!, mac: m[2]! }));

describe('real VMs on a bridge', () => {
  it('the guest sees the leased MAC; the tap is on the bridge with an fe: MAC; poweroff frees everything', async () => {
    const vm = bootGuest(e.guest, e.sb, e.ns.name, 'solo');
    await vm.waitSerial(/^UNCLOUD-READY/m);
    const [lease] = await vmLeases('solo');
    const listed = JSON.parse((await cli(['list', '--json'], { env: e.sb.env })).stdout);
    expect(listed).toMatchObject([{ name: 'solo', state: 'running', nics: [{ mac: lease!.mac }] }]);
    expect(nicLines(vm.serial())).toEqual([{ dev: 'eth0', mac: lease!.mac }]);
    const rec = JSON.parse(readFileSync(join(e.sb.runDir, 'solo', 'vm.json'), 'utf8'));
    const tap = links().find((l) => l.ifname === rec.nics[0].tap)!;
    expect(tap.master).toBe('br0');
    expect(tap.address).toBe(`fe${lease!.mac.slice(2)}`);

    await qmpCommand(rec.qmpSocket, 'system_powerdown');
    const r = await vm.done;
    expect(r.code, r.stderr).toBe(0);
    expect(vm.serial()).toMatch(/^UNCLOUD-POWEROFF/m);
    expect(taps()).toEqual([]);
    expect(await leases()).toEqual([]);
  });

  it('two VMs started at once get different MACs and ping each other; SIGTERM to the launchers cleans up', async () => {
    const a = bootGuest(e.guest, e.sb, e.ns.name, 'ping-a', { append: 'uc.ip.eth0=10.77.0.2/24 uc.ping=10.77.0.3' });
    const b = bootGuest(e.guest, e.sb, e.ns.name, 'ping-b', { append: 'uc.ip.eth0=10.77.0.3/24 uc.ping=10.77.0.2' });
    await Promise.all([a.waitSerial(/^UNCLOUD-PING 10\.77\.0\.3 (ok|fail)/m, 90_000), b.waitSerial(/^UNCLOUD-PING 10\.77\.0\.2 (ok|fail)/m, 90_000)]);
    expect(a.serial()).toMatch(/^UNCLOUD-PING 10\.77\.0\.3 ok/m);
    expect(b.serial()).toMatch(/^UNCLOUD-PING 10\.77\.0\.2 ok/m);
    const macA = nicLines(a.serial())[0]!.mac;
    const macB = nicLines(b.serial())[0]!.mac;
    expect(macA).not.toBe(macB);
    expect((await vmLeases('ping-a')).map((l) => l.mac)).toEqual([macA]);
    expect((await vmLeases('ping-b')).map((l) => l.mac)).toEqual([macB]);
    expect(taps()).toHaveLength(2);

    a.child().kill('SIGTERM');
    b.child().kill('SIGTERM');
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    expect(taps()).toEqual([]);
    expect(await leases()).toEqual([]);
  });

  it('two NICs on two bridges: two distinct MACs in the guest; kill -9 of qemu still frees the leases', async () => {
    const vm = bootGuest(e.guest, e.sb, e.ns.name, 'dual', { args: ['--nic', 'bridge=br0', '--nic', 'bridge=br1'] });
    await vm.waitSerial(/^UNCLOUD-READY/m);
    const seen = nicLines(vm.serial());
    const held = await vmLeases('dual');
    expect(seen.map((n) => n.dev)).toEqual(['eth0', 'eth1']);
    expect(seen.map((n) => n.mac)).toEqual(held.map((l) => l.mac));
    expect(new Set(seen.map((n) => n.mac)).size).toBe(2);
    const masters = taps().map((t) => t.master).sort();
    expect(masters).toEqual(['br0', 'br1']);

    const rec = JSON.parse(readFileSync(join(e.sb.runDir, 'dual', 'vm.json'), 'utf8'));
    process.kill(rec.qemu.pid, 'SIGKILL');
    const r = await vm.done;
    expect(r.code).toBe(137);
    await waitFor('taps gone', () => taps().length === 0, 5000);
    expect(await leases()).toEqual([]);
  });

  it('launcher and qemu both killed -9: the tap goes with qemu, gc frees the lease', async () => {
    const vm = bootGuest(e.guest, e.sb, e.ns.name, 'crash');
    await vm.waitSerial(/^UNCLOUD-READY/m);
    const rec = JSON.parse(readFileSync(join(e.sb.runDir, 'crash', 'vm.json'), 'utf8'));
    process.kill(rec.launcher.pid, 'SIGKILL');
    process.kill(rec.qemu.pid, 'SIGKILL');
    await vm.done;
    await waitFor('taps gone', () => taps().length === 0, 5000);
    const before = await vmLeases('crash');
    expect(before).toHaveLength(1);
    const listed = JSON.parse((await cli(['list', '--json'], { env: e.sb.env })).stdout);
    expect(listed).toContainEqual(expect.objectContaining({ name: 'crash', state: 'stale' }));
    const gc = await cli(['gc'], { env: e.sb.env });
    expect(gc.stdout).toContain(`freed ${before[0]!.mac} (VM crash nic0)`);
    expect(await leases()).toEqual([]);
  });

  it('a missing bridge fails before qemu starts and holds nothing', async () => {
    const vm = bootGuest(e.guest, e.sb, e.ns.name, 'nobridge', { args: ['--nic', 'bridge=br9'] });
    const r = await vm.done;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^uncloud-vm: bridge br9 does not exist/m);
    expect(vm.serial()).toBe('');
    expect(await leases()).toEqual([]);
    expect(taps()).toEqual([]);
  });
});
