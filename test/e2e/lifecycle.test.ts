/** Lifecycle on the real test guest: stop over QMP, status, detached VMs, sticky identity. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, waitFor } from '../helpers/cli.js';
import { guestEnvironment } from '../helpers/e2e.js';
import { bootGuest, serialLogOf } from '../helpers/guest.js';
import { qmpCommand } from '../helpers/qmp-raw.js';

const e = guestEnvironment(['br0']);

const run = (args: string[]) => cli(args, { env: e.sb.env, netns: e.ns.name });
const leases = async () => JSON.parse((await run(['mac', 'list', '--json'])).stdout) as { mac: string; vm: { name: string; uuid: string }; state: string }[];
const taps = () => (JSON.parse(e.ns.ip('-j', 'link', 'show')) as { ifname: string }[]).filter((l) => l.ifname.startsWith('uc'));
const guestArgs = (extra = '') => [
  '--accel', 'tcg', '--memory', '192', '--kernel', e.guest.kernel, '--initrd', e.guest.initrd, '--no-reboot',
  '--append', `console=ttyS0 panic=-1 quiet ${extra}`.trim(),
];
const serial = (name: string) => {
  const p = serialLogOf(e.sb, name);
  return existsSync(p) ? readFileSync(p, 'utf8') : '';
};

describe('stop and status', () => {
  it('status shows a running VM from QMP; stop powers the guest off via ACPI and everything is given back', async () => {
    const vm = bootGuest(e.guest, e.sb, e.ns.name, 'st1');
    await vm.waitSerial(/^UNCLOUD-READY/m);
    const st = JSON.parse((await run(['status', 'st1', '--json'])).stdout);
    expect(st).toMatchObject({ name: 'st1', state: 'running', qemuStatus: 'running', nics: [{ index: 0, bridge: 'br0' }] });
    expect(st.pid).toBeGreaterThan(0);
    // Least privilege: what qemu created is its owner's only.
    for (const f of [st.qmpSocket, join(e.sb.runDir, 'st1', 'qemu.pid'), st.serialLog]) expect((statSync(f).mode & 0o777).toString(8), f).toBe('600');
    expect((statSync(join(e.sb.runDir, 'st1')).mode & 0o777).toString(8)).toBe('700');
    const byUuid = JSON.parse((await run(['status', st.uuid, '--json'])).stdout);
    expect(byUuid.name).toBe('st1');

    const t0 = Date.now();
    const stop = await run(['stop', 'st1']);
    const ms = Date.now() - t0;
    expect(stop.code, stop.stderr).toBe(0);
    expect(stop.stderr).toMatch(/ACPI power button pressed/);
    expect(stop.stderr).toMatch(/VM st1 powered off after/);
    expect(ms).toBeLessThan(20_000);
    expect((await vm.done).code).toBe(0);
    expect(vm.serial()).toMatch(/^UNCLOUD-POWEROFF/m);
    expect(taps()).toEqual([]);
    expect(await leases()).toEqual([]);
    const after = await run(['status', 'st1', '--json']);
    expect(JSON.parse(after.stdout)).toMatchObject({ name: 'st1', state: 'stopped' });
  });

  it('a guest that ignores the power button is quit after --timeout; leases free', async () => {
    const vm = bootGuest(e.guest, e.sb, e.ns.name, 'deaf', { append: 'uc.acpi=off' });
    await vm.waitSerial(/^UNCLOUD-READY/m);
    const stop = await run(['stop', 'deaf', '--timeout', '2']);
    expect(stop.code, stop.stderr).toBe(0);
    expect(stop.stderr).toMatch(/still running after 2 s; quitting qemu/);
    expect(stop.stderr).toMatch(/VM deaf quit after/);
    await vm.done;
    expect(vm.serial()).not.toMatch(/UNCLOUD-POWEROFF/);
    expect(await leases()).toEqual([]);
    expect(taps()).toEqual([]);
  });

  it('SIGTERM to a foreground start presses the power button first', async () => {
    const vm = bootGuest(e.guest, e.sb, e.ns.name, 'term');
    await vm.waitSerial(/^UNCLOUD-READY/m);
    vm.child().kill('SIGTERM');
    const r = await vm.done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/ACPI power button pressed/);
    expect(vm.serial()).toMatch(/^UNCLOUD-POWEROFF/m);
    expect(await leases()).toEqual([]);
  });

  it('stop of a VM that is not running is a clear error', async () => {
    const r = await run(['stop', 'nosuchvm']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^uncloud-vm: VM nosuchvm is not running/);
    const bad = await run(['stop', '../etc']);
    expect(bad.code).toBe(2);
  });
});

describe('detached VMs', () => {
  it('start --detach returns once QMP answers; the guest powering off gives the MAC back through ifdown', async () => {
    const r = await run(['start', '--name', 'bg1', '--detach', ...guestArgs()]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/VM bg1 runs in the background \(qemu pid \d+\)/);
    const st = JSON.parse((await run(['status', 'bg1', '--json'])).stdout);
    expect(st).toMatchObject({ state: 'running', launcherPid: null });
    expect((await leases()).map((l) => l.state)).toEqual(['live']);
    await waitFor('guest ready', () => /^UNCLOUD-READY/m.test(serial('bg1')), 60_000);
    await qmpCommand(st.qmpSocket, 'system_powerdown');
    await waitFor('lease given back by ifdown', async () => (await leases()).length === 0, 20_000);
    expect(taps()).toEqual([]);
  });

  it('a detached VM killed with SIGKILL: its lease is stale and gc frees it', async () => {
    const r = await run(['start', '--name', 'bg2', '--detach', ...guestArgs()]);
    expect(r.code, r.stderr).toBe(0);
    const st = JSON.parse((await run(['status', 'bg2', '--json'])).stdout);
    process.kill(st.pid, 'SIGKILL');
    await waitFor('stale', async () => (await leases())[0]?.state === 'stale', 10_000);
    const gc = await run(['gc']);
    expect(gc.stdout).toMatch(/freed 42:00:00:[0-9a-f:]+ \(VM bg2 nic0\)/);
    expect(gc.stdout).toMatch(/removed run dir bg2/);
    expect(await leases()).toEqual([]);
  });
});

describe('sticky identity', () => {
  it('a named VM comes back with the same UUID and MAC; if another VM took the MAC, a new one, said on stderr', async () => {
    const first = await run(['start', '--name', 'sticky', '--detach', ...guestArgs()]);
    expect(first.code, first.stderr).toBe(0);
    const a = JSON.parse((await run(['status', 'sticky', '--json'])).stdout);
    await run(['stop', 'sticky', '--force']);
    expect(await leases()).toEqual([]);
    expect(JSON.parse((await run(['list', '--json'])).stdout)).toContainEqual(expect.objectContaining({ name: 'sticky', state: 'stopped' }));

    const second = await run(['start', '--name', 'sticky', '--detach', ...guestArgs()]);
    expect(second.code, second.stderr).toBe(0);
    const b = JSON.parse((await run(['status', 'sticky', '--json'])).stdout);
    expect(b.uuid).toBe(a.uuid);
    expect(b.nics[0].mac).toBe(a.nics[0].mac);
    await run(['stop', 'sticky', '--force']);

    // Another VM takes the MAC meanwhile: the named VM gets a new one and says so.
    const other = await run(['start', '--name', 'thief', '--detach', '--nic', `bridge=br0,mac=${a.nics[0].mac}`, ...guestArgs()]);
    expect(other.code, other.stderr).toBe(0);
    const held = await run(['start', '--name', 'thief2', '--detach', '--nic', `bridge=br0,mac=${a.nics[0].mac}`, ...guestArgs()]);
    expect(held.code).toBe(1);
    expect(held.stderr).toMatch(new RegExp(`MAC ${a.nics[0].mac} is used by VM thief, running on this host`));
    const third = await run(['start', '--name', 'sticky', '--detach', ...guestArgs()]);
    expect(third.code, third.stderr).toBe(0);
    expect(third.stderr).toMatch(new RegExp(`nic0's previous MAC ${a.nics[0].mac} is held by VM thief; using 42:`));
    await run(['stop', 'sticky', '--force']);
    await run(['stop', 'thief', '--force']);
    expect(await leases()).toEqual([]);
  });
});
