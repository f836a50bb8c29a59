/**
 * systemd units for VMs: verified by systemd-analyze, then run under a real systemd --user with the real
 * test guest. Under the unit, qemu is the main process and no node process stays in the service's cgroup.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cli, ROOT, sandbox, type Sandbox, waitFor } from '../helpers/cli.js';
import { buildGuest } from '../helpers/guest.js';
import { createNetns, type Netns } from '../helpers/netns.js';
import { startUserSystemd, type UserSystemd } from '../helpers/user-systemd.js';

let sb: Sandbox;
let guest: { kernel: string; initrd: string };
beforeAll(() => {
  guest = buildGuest();
  sb = sandbox();
});
afterAll(() => sb.cleanup());

const HOSTILE_APPEND = `console=ttyS0 a="b c" 100% $HOME \\x 'q' $(id) \`id\``;

describe('unit files', () => {
  it.each([
    ['system', []],
    ['user', ['--user']],
  ])('a %s unit passes systemd-analyze verify, with values that need escaping', async (_kind, extra) => {
    const r = await cli(
      ['unit', 'web.1-x_y', '--memory', '256', '--accel', 'tcg', '--kernel', guest.kernel, '--append', HOSTILE_APPEND, ...extra],
      { env: sb.env },
    );
    expect(r.code, r.stderr).toBe(0);
    const dir = join(sb.stateDir, '..', `units-${_kind}`);
    mkdirSync(dir, { recursive: true });
    const path = join(dir, 'uncloud-vm-web.1-x_y.service');
    writeFileSync(path, r.stdout);
    const runtime = join(dir, 'xdg-runtime');
    mkdirSync(runtime, { recursive: true, mode: 0o700 });
    const v = spawnSync('systemd-analyze', [...(extra.length ? ['--user'] : []), 'verify', path], {
      encoding: 'utf8',
      env: { ...process.env, XDG_RUNTIME_DIR: runtime },
    });
    expect(v.status, v.stderr).toBe(0);
    expect(v.stderr.trim()).toBe('');
    // The escaped --append reaches ExecStartPre as one word, exactly as given.
    expect(r.stdout).toContain(`--append "console=ttyS0 a=\\"b c\\" 100%% $$HOME \\\\x 'q' $$(id) \`id\`"`);
    expect(r.stdout).toMatch(/^ExecStart=\/bin\/sh \S+\/web\.1-x_y\/exec\.sh$/m);
    expect(r.stdout).toMatch(/^KillMode=mixed$/m);
    expect(r.stdout).toMatch(/^TimeoutStopSec=90$/m);
  });

  it.each([
    [['unit', 'a b'], /invalid VM name 'a b'/],
    [['unit', 'x/../y'], /invalid VM name/],
    [['unit', 'ok', '--enable'], /--enable needs --install/],
    [['unit', 'ok', '--append', 'a\nb'], /control characters/],
  ])('refuses %j', async (args, re) => {
    const r = await cli(args, { env: sb.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
  });
});

describe('a VM under a real systemd --user', () => {
  let ns: Netns;
  let sd: UserSystemd;
  const unit = 'uncloud-vm-svc1.service';
  beforeAll(async () => {
    ns = createNetns(['br0']);
    sd = await startUserSystemd(ns.name, join(sb.stateDir, '..'));
  });
  afterAll(() => {
    sd?.systemctl('stop', unit);
    sd?.stop();
    ns?.remove();
  });

  // The CLI runs with systemd's HOME (its unit dir) and the sandbox's state and run dirs.
  const uvm = (...args: string[]) => {
    const { HOME: _home, ...env } = sb.env;
    return sd.run(process.execPath, [BIN, ...args], env);
  };
  const leases = () => JSON.parse(uvm('mac', 'list', '--json').stdout) as { mac: string; state: string; vm: { name: string; uuid: string } }[];
  const serialPath = () => join(sb.stateDir, 'logs', 'svc1', 'serial.log');
  const serial = () => (existsSync(serialPath()) ? readFileSync(serialPath(), 'utf8') : '');
  // The serial log is kept across starts: a boot is a new READY line.
  const boots = () => (serial().match(/^UNCLOUD-READY/gm) ?? []).length;
  const show = (prop: string) => sd.systemctl('show', '-p', prop, '--value', unit).stdout.trim();

  it('systemd hands hostile words to a command exactly as given', async () => {
    const { systemdExecWord } = await import('../../src/core/quote.js');
    const words = [HOSTILE_APPEND, '%h %n %%', '$HOME ${HOME} $$', 'a"b\\c', "it's", ' lead and trail ', 'semi;colon', ''];
    const out = join(sb.stateDir, '..', 'argv.out');
    const dump = join(ROOT, 'test/fixtures/argv-dump.sh');
    const unitText = `[Service]\nType=oneshot\nExecStart=${[dump, out, ...words].map(systemdExecWord).join(' ')}\n`;
    const dir = join(sd.home, '.config/systemd/user');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'uncloud-vm-quote-test.service'), unitText);
    expect(sd.systemctl('daemon-reload').status).toBe(0);
    const r = sd.systemctl('start', 'uncloud-vm-quote-test.service');
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(out, 'utf8').split('\u0000').slice(0, -1)).toEqual(words);
  });

  it('installs, starts the guest with qemu as the main process and no node in the cgroup, stops it gracefully', async () => {
    const inst = uvm('unit', 'svc1', '--user', '--install', '--memory', '192', '--accel', 'tcg', '--kernel', guest.kernel, '--initrd', guest.initrd, '--no-reboot', '--append', 'console=ttyS0 panic=-1 quiet', '--stop-timeout', '20');
    expect(inst.status, inst.stderr).toBe(0);
    expect(existsSync(join(sd.home, '.config/systemd/user', unit))).toBe(true);

    const st = sd.systemctl('start', unit);
    expect(st.status, st.stderr).toBe(0);
    await waitFor('guest ready', () => /^UNCLOUD-READY/m.test(serial()), 60_000);
    const mac = /^UNCLOUD-NIC eth0 (\S+)/m.exec(serial())![1]!;
    expect(leases()).toEqual([expect.objectContaining({ mac, state: 'live', vm: expect.objectContaining({ name: 'svc1' }) })]);

    const mainPid = Number(show('MainPID'));
    expect(readFileSync(`/proc/${mainPid}/comm`, 'utf8').trim()).toMatch(/^qemu-system-x86/);
    const cgroup = show('ControlGroup');
    const procs = sd.run('sh', ['-c', `cat /sys/fs/cgroup/systemd${cgroup}/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup${cgroup}/cgroup.procs`]).stdout.trim().split('\n').map(Number);
    expect(procs).toEqual([mainPid]);
    const st1 = JSON.parse(uvm('status', 'svc1', '--json').stdout);
    expect(st1).toMatchObject({ state: 'running', qemuStatus: 'running', pid: mainPid });

    const t0 = Date.now();
    const stop = sd.systemctl('stop', unit);
    const stopMs = Date.now() - t0;
    expect(stop.status, stop.stderr).toBe(0);
    expect(serial()).toMatch(/^UNCLOUD-POWEROFF/m);
    expect(leases()).toEqual([]);
    expect(stopMs).toBeLessThan(20_000);
    console.log(`systemctl stop → lease free: ${stopMs} ms`);
  });

  it('kill -s KILL: ExecStopPost still frees the lease; the next start has the same UUID and MAC', async () => {
    const booted = boots();
    expect(sd.systemctl('start', unit).status).toBe(0);
    await waitFor('guest ready', () => boots() > booted, 60_000);
    const before = leases();
    expect(before).toHaveLength(1);
    expect(sd.systemctl('kill', '-s', 'KILL', unit).status).toBe(0);
    await waitFor('unit inactive', () => /inactive|failed/.test(show('ActiveState')), 20_000);
    await waitFor('lease freed', () => leases().length === 0, 10_000);

    sd.systemctl('reset-failed', unit);
    expect(sd.systemctl('start', unit).status).toBe(0);
    await waitFor('guest ready', () => boots() > booted + 1, 60_000);
    const after = leases();
    expect(after.map((l) => [l.mac, l.vm.uuid])).toEqual(before.map((l) => [l.mac, l.vm.uuid]));
    expect(sd.systemctl('stop', unit).status).toBe(0);
    expect(leases()).toEqual([]);
  });
});
