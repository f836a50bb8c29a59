/**
 * `unit` through the built binary, without systemd: what the unit says (disks not here yet, the etcd agent,
 * the restart policy, a stable path to uncloud-vm) and an --install that fails giving back what it wrote.
 * (Units under a real systemd: test/e2e/unit.test.ts.)
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BIN, cli, sandbox, type Sandbox } from '../helpers/cli.js';

let sb: Sandbox;
let dir: string;
beforeEach(() => {
  sb = sandbox();
  dir = join(sb.stateDir, '..');
});
afterEach(() => sb.cleanup());

const unit = (args: string[], env: NodeJS.ProcessEnv = {}) => cli(['unit', 'web1', '--accel', 'tcg', ...args], { env: { ...sb.env, ...env } });
const line = (text: string, key: string) => text.split('\n').filter((l) => l.startsWith(`${key}=`));

describe('unit', () => {
  it('prints a unit for disks that are not on this host yet, saying so; an existing disk gets its format pinned', async () => {
    writeFileSync(join(dir, 'here.img'), Buffer.alloc(4096));
    const r = await unit([
      '--disk', '/var/lib/vms-elsewhere/web1.qcow2',
      '--disk', 'new=/var/lib/vms-elsewhere/o.qcow2,backing=/var/lib/vms-elsewhere/base.qcow2',
      '--disk', join(dir, 'here.img'),
      '--cloud-init', 'ssh-keys=/nonexistent/id.pub',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const pre = line(r.stdout, 'ExecStartPre')[0]!;
    expect(pre).toContain(
      `--disk file=/var/lib/vms-elsewhere/web1.qcow2 --disk new=/var/lib/vms-elsewhere/o.qcow2,backing=/var/lib/vms-elsewhere/base.qcow2 --disk file=${join(dir, 'here.img')},format=raw`,
    );
    expect(pre).toContain('--cloud-init ssh-keys=/nonexistent/id.pub');
    expect(r.stderr).toContain('uncloud-vm: note: --disk /var/lib/vms-elsewhere/web1.qcow2 does not exist on this host (yet); the unit checks it each time it starts');
    expect(r.stderr).toContain('note: --disk backing=/var/lib/vms-elsewhere/base.qcow2 does not exist on this host (yet)');
    expect(r.stderr).toContain('note: --cloud-init ssh-keys=/nonexistent/id.pub does not exist on this host (yet)');
  });

  it('on the etcd store, the VM is ordered after the host agent and requires it; not on the file store', async () => {
    const etcd = await unit([], { UNCLOUD_VM_STORE: 'etcd://127.0.0.1:2379' });
    expect(etcd.code, etcd.stderr).toBe(0);
    expect(line(etcd.stdout, 'After')).toEqual(['After=network-online.target', 'After=uncloud-vm-agent.service']);
    expect(line(etcd.stdout, 'Requires')).toEqual(['Requires=uncloud-vm-agent.service']);
    const file = await unit([]);
    expect(line(file.stdout, 'After')).toEqual(['After=network-online.target']);
    expect(line(file.stdout, 'Requires')).toEqual([]);
  });

  it('the settings in force reach the unit: the VXLAN underlay settings as Environment=, a --config file as --config on every hook', async () => {
    const config = join(dir, 'my config.json');
    writeFileSync(config, JSON.stringify({ bridges: { br0: { prefixes: ['fd42:0:0:1::/64'] } } }));
    const env = { UNCLOUD_VM_VXLAN_DEV: 'underlay', UNCLOUD_VM_VXLAN_PEERS: 'fd00::2,fd00::3', UNCLOUD_VM_VXLAN_MTU: '1400', UNCLOUD_VM_CONFIG: config };
    const r = await unit(['--nic', 'network=7'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(line(r.stdout, 'Environment')).toEqual([
      expect.stringMatching(/^Environment=UNCLOUD_VM_HOST=\S+$/),
      'Environment=UNCLOUD_VM_VXLAN_DEV=underlay',
      'Environment=UNCLOUD_VM_VXLAN_PEERS=fd00::2,fd00::3',
      'Environment=UNCLOUD_VM_VXLAN_MTU=1400',
    ]);
    for (const key of ['ExecStartPre', 'ExecStartPost', 'ExecStop', 'ExecStopPost']) {
      for (const l of line(r.stdout, key)) expect(l, key).toContain(`--config "${config}"`);
    }
    // Unset, nothing is written: the unit then follows the host's settings as they are at each start.
    const plain = await unit([]);
    expect(line(plain.stdout, 'Environment').map((l) => l.split('=')[1])).toEqual(['UNCLOUD_VM_HOST']);
  });

  it('--restart on-failure and always become Restart=; none by default', async () => {
    expect(line((await unit([])).stdout, 'Restart')).toEqual([]);
    expect(line((await unit(['--restart', 'no'])).stdout, 'Restart')).toEqual([]);
    const r = await unit(['--restart', 'on-failure']);
    expect(line(r.stdout, 'Restart')).toEqual(['Restart=on-failure']);
    expect(line(r.stdout, 'RestartSec')).toEqual(['RestartSec=5']);
    expect(line((await unit(['--restart', 'always'])).stdout, 'Restart')).toEqual(['Restart=always']);
    const bad = await unit(['--restart', 'sometimes']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe("uncloud-vm: option '--restart <policy>' argument 'sometimes' is invalid. Allowed choices are no, on-failure, always. (see --help)");
  });

  it('ExecStart and the hooks name the uncloud-vm on PATH when it is this program, not the checkout', async () => {
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    symlinkSync(BIN, join(bin, 'uncloud-vm'));
    const installed = await unit([], { PATH: `${bin}:${process.env.PATH}` });
    expect(installed.code, installed.stderr).toBe(0);
    for (const key of ['ExecStartPre', 'ExecStartPost', 'ExecStopPost']) {
      expect(line(installed.stdout, key)[0]).toMatch(new RegExp(`^${key}=${process.execPath} ${join(bin, 'uncloud-vm')} --config \\S+ --state-dir `));
    }
    expect(line(installed.stdout, 'ExecStop')[0]).toMatch(new RegExp(`^ExecStop=-${process.execPath} ${join(bin, 'uncloud-vm')} `));
    expect(installed.stderr).not.toContain('so the unit runs');

    // Another program of that name on PATH (another checkout, an older install): the unit names this one and says why.
    const other = join(dir, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'uncloud-vm'), '#!/bin/sh\n', { mode: 0o755 });
    const checkout = await unit([], { PATH: `${other}:${process.env.PATH}` });
    expect(line(checkout.stdout, 'ExecStartPre')[0]).toContain(` ${BIN} --config ${sb.env.UNCLOUD_VM_CONFIG} --state-dir `);
    expect(checkout.stderr).toContain(`uncloud-vm: note: the uncloud-vm on PATH (${join(other, 'uncloud-vm')}) is another copy, so the unit runs ${BIN}; install this one`);
    const none = await unit([], { PATH: '/usr/bin:/bin' });
    expect(none.stderr).toContain(`uncloud-vm: note: no uncloud-vm is on PATH, so the unit runs ${BIN}; install this one`);
  });

  describe('--install that systemctl refuses', () => {
    /** A systemctl that fails daemon-reload (or enable) the way a broken systemd does. */
    const fakeSystemctl = (failOn: string) => {
      const bin = join(dir, 'fake-bin');
      mkdirSync(bin, { recursive: true });
      writeFileSync(join(bin, 'systemctl'), `#!/bin/sh\nfor a; do [ "$a" = ${failOn} ] && { echo "Failed to ${failOn}: Transport endpoint is not connected" >&2; exit 1; }; done\nexit 0\n`, { mode: 0o755 });
      return { PATH: `${bin}:${process.env.PATH}`, XDG_CONFIG_HOME: join(dir, 'config') };
    };
    const unitFile = () => join(dir, 'config', 'systemd', 'user', 'uncloud-vm-web1.service');

    it('daemon-reload fails: the unit file it wrote is removed again, one line, exit 1', async () => {
      const r = await unit(['--user', '--install'], fakeSystemctl('daemon-reload'));
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n').filter((l) => !l.includes('note:'))).toEqual([
        `uncloud-vm: systemctl --user daemon-reload failed: Failed to daemon-reload: Transport endpoint is not connected; removed ${unitFile()} again`,
      ]);
      expect(existsSync(unitFile())).toBe(false);
    });

    it('enable fails after a unit was there: the previous unit is put back', async () => {
      const env = fakeSystemctl('enable');
      const first = await unit(['--user', '--install', '--memory', '128'], env);
      expect(first.code, first.stderr).toBe(0);
      const before = readFileSync(unitFile(), 'utf8');
      const r = await unit(['--user', '--install', '--enable', '--memory', '256'], env);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/systemctl --user enable uncloud-vm-web1\.service failed: .*; put the previous .*uncloud-vm-web1\.service back$/m);
      expect(readFileSync(unitFile(), 'utf8')).toBe(before);
    });
  });
});
