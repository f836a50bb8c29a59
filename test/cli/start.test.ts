/** `uncloud-vm start` through the built binary, with a fake qemu, inside a namespace with a bridge. */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, FAKE_QEMU, waitFor } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';
import { snapshot } from '../helpers/state.js';

const fake = fakeQemuEnvironment({ bridges: ['br0', 'br1'] });
const { start } = fake;
const leases = () => fake.leases<{ mac: string; state: string; vm: { name: string } }>();

describe('start with a fake qemu', () => {
  it('holds the lease while qemu runs and frees it after; the argv reached qemu', async () => {
    const log = join(fake.sb.runDir, '..', 'argv.log');
    const run = start(['--name', 'web1', '--cores', '2'], { FAKE_QEMU_SLEEP: '3', FAKE_QEMU_LOG: log });
    const held = await waitFor('a live lease', async () => {
      const l = await leases();
      return l.length === 1 && l[0]!.state === 'live' ? l : undefined;
    });
    expect(held[0]!.vm.name).toBe('web1');
    const vms = JSON.parse((await cli(['list', '--json'], { env: fake.sb.env })).stdout);
    expect(vms).toMatchObject([{ name: 'web1', state: 'running', nics: [{ mac: held[0]!.mac, nic: 0 }] }]);
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect(await leases()).toEqual([]);
    // Nothing of the VM is left in the run dir; its serial log is kept on the state side.
    expect(readdirSync(fake.sb.runDir).filter((e) => !e.startsWith('.'))).toEqual([]);
    expect(existsSync(join(fake.sb.stateDir, 'logs', 'web1', 'serial.log'))).toBe(true);
    const argv = readFileSync(log, 'utf8').trim().split('\n');
    expect(argv).toContain(`virtio-net-pci,netdev=net0,id=nic0,mac=${held[0]!.mac}`);
    expect(argv.slice(0, 4)).toEqual(['-name', 'web1', '-uuid', expect.stringMatching(/^[0-9a-f-]{36}$/)]);
  });

  it("a qemu that fails to start: its exit code, its whole stderr, the lease freed, nothing remembered, the log kept", async () => {
    const said = 'qemu-system-x86_64: -machine foo: unsupported machine type\nUse -machine help to list supported machines';
    const r = await start(['--name', 'bad1'], { FAKE_QEMU_EXIT: '3', FAKE_QEMU_STDERR: said });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(
      'uncloud-vm: qemu failed to start (exit code 3); qemu said:\n  qemu-system-x86_64: -machine foo: unsupported machine type\n  Use -machine help to list supported machines\n',
    );
    // Said once: held back until qemu is up, so not also printed raw.
    expect(r.stderr.split('unsupported machine type')).toHaveLength(2);
    expect(await leases()).toEqual([]);
    expect(JSON.parse((await cli(['list', '--json'], { env: fake.sb.env })).stdout)).toEqual([]);
    const log = await cli(['logs', 'bad1', '--qemu'], { env: fake.sb.env });
    expect(log.stdout).toMatch(/^-- uncloud-vm: VM bad1 \([0-9a-f-]{36}\) starting at .* --\nqemu-system-x86_64: -machine foo: unsupported machine type\nUse -machine help/);
  });

  it('SIGTERM to the launcher stops qemu and frees the lease', async () => {
    let pid = 0;
    const run = start(['--name', 'sig1'], { FAKE_QEMU_SLEEP: '60' }, (c) => (pid = c.pid!));
    await waitFor('qemu running', () => existsSync(join(fake.sb.runDir, 'sig1', 'qemu.pid')));
    // `ip netns exec` execs the launcher in place: the pid we spawned is the launcher's.
    const rec = JSON.parse(readFileSync(join(fake.sb.runDir, 'sig1', 'vm.json'), 'utf8'));
    expect(rec.launcher.pid).toBe(pid);
    process.kill(pid, 'SIGTERM');
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/SIGTERM: stopping VM sig1/);
    expect(await leases()).toEqual([]);
    expect(existsSync(join(fake.sb.runDir, 'sig1'))).toBe(false);
  });

  it('qemu killed by a signal: exit 128+n, lease freed', async () => {
    const run = start(['--name', 'k1'], { FAKE_QEMU_SLEEP: '60' });
    await waitFor('qemu pid', () => existsSync(join(fake.sb.runDir, 'k1', 'qemu.pid')) && readFileSync(join(fake.sb.runDir, 'k1', 'qemu.pid'), 'utf8').trim());
    process.kill(Number(readFileSync(join(fake.sb.runDir, 'k1', 'qemu.pid'), 'utf8')), 'SIGKILL');
    const r = await run;
    expect(r.code).toBe(137);
    expect(r.stderr).toMatch(/qemu was killed by SIGKILL/);
    expect(await leases()).toEqual([]);
  });

  it('a missing qemu binary is a clear error before anything is taken', async () => {
    for (const qemu of ['/nonexistent/qemu-system-x86_64', 'no-such-qemu-binary']) {
      const r = await start(['--qemu', qemu]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`qemu binary '${qemu}' not found; install qemu-system-x86 or pass --qemu`));
      expect(await leases()).toEqual([]);
      expect(existsSync(fake.sb.runDir)).toBe(false);
    }
  });

  it('a missing bridge fails before qemu starts and takes nothing', async () => {
    const log = join(fake.sb.runDir, '..', 'argv.log');
    const r = await start(['--nic', 'bridge=nobr0'], { FAKE_QEMU_LOG: log });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bridge nobr0 does not exist/);
    expect(existsSync(log)).toBe(false);
    expect(await leases()).toEqual([]);
  });

  it('two NICs on two bridges get two leases; a specific MAC is honoured', async () => {
    const log = join(fake.sb.runDir, '..', 'argv.log');
    const r = await start(['--nic', 'bridge=br0', '--nic', 'bridge=br1,mac=42:00:00:00:99:01'], { FAKE_QEMU_LOG: log });
    expect(r.code, r.stderr).toBe(0);
    const argv = readFileSync(log, 'utf8');
    expect(argv).toMatch(/netdev=net0,id=nic0,mac=42:00:00:00:00:01/);
    expect(argv).toMatch(/netdev=net1,id=nic1,mac=42:00:00:00:99:01/);
  });

  it('refuses a second launcher for a VM name that is running', async () => {
    const first = start(['--name', 'dup'], { FAKE_QEMU_SLEEP: '4' });
    await waitFor('first VM', async () => (await leases()).length === 1);
    const second = await start(['--name', 'dup']);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/VM dup is already (starting|running) \(pid [0-9]+\); stop it first/);
    expect(await leases()).toHaveLength(1);
    expect((await first).code).toBe(0);
  });
});

describe('the claim and stale guards', () => {
  const UUID = '0b5f6a9e-3c1d-4e2f-8a7b-9c0d1e2f3a4b';
  const TAP = 'uc0b5f6a9e3cn0';
  /** An nft on PATH that logs each call, "before" or "after" the fake qemu was exec'd. */
  const nftStub = () => {
    const bin = join(fake.sb.runDir, '..', 'bin');
    const log = join(bin, 'nft.log');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'nft'), `#!/bin/sh\nif [ -e "$FAKE_QEMU_STARTED" ]; then w=after; else w=before; fi\necho "$w $*" >> '${log}'\nexit 1\n`, { mode: 0o755 });
    const started = join(bin, 'started');
    return { env: { PATH: `${bin}:${process.env.PATH}`, FAKE_QEMU_STARTED: started }, log: () => (existsSync(log) ? readFileSync(log, 'utf8') : ''), started };
  };

  it('a start runs no nft before qemu when no guard of its taps is marked; a marked one is looked for, then unmarked', async () => {
    const nft = nftStub();
    const r1 = await start(['--uuid', UUID, '--nic', 'bridge=br0'], nft.env);
    expect(r1.code, r1.stderr).toBe(0);
    expect(existsSync(nft.started)).toBe(true);
    expect(nft.log()).not.toMatch(/^before/m);
    // ifup.sh's mark of a guard a killed qemu left (the fake qemu runs no ifup).
    const mark = join(fake.sb.runDir, '.guards', TAP);
    mkdirSync(dirname(mark), { recursive: true });
    writeFileSync(mark, '');
    rmSync(nft.started);
    const r2 = await start(['--uuid', UUID, '--nic', 'bridge=br0'], nft.env);
    expect(r2.code, r2.stderr).toBe(0);
    expect(nft.log()).toMatch(/^before -j list table bridge uncloud_vm$/m);
    // nft found no table (the stub fails): nothing is left to remove, and the mark goes.
    expect(existsSync(mark)).toBe(false);
  });
});

describe('start --dry-run', () => {
  it('prints the command one option per line and writes nothing', async () => {
    await cli(['mac', 'allocate'], { env: fake.sb.env });
    const before = snapshot(join(fake.sb.stateDir, '..'));
    const r = await start(['--dry-run', '--cores', '2', '--name', 'dry1']);
    expect(r.code, r.stderr).toBe(0);
    const all = r.stdout.trim().split('\n');
    const lines = all.filter((l) => !l.startsWith('#'));
    expect(lines[0]).toBe(`${FAKE_QEMU} \\`);
    expect(lines).toContain('  -smp 2 \\');
    expect(lines).toContain('  -m 64 \\');
    expect(lines.at(-1)).toBe('  -device virtio-net-pci,netdev=net0,id=nic0,mac=42:00:00:00:00:02');
    // The NIC's addresses follow as shell comments (the namespace's br0 has no IPv6 prefix).
    expect(all.slice(lines.length)).toEqual([
      '# nic0 42:00:00:00:00:02 on br0',
      '#   link-local: fe80::4000:ff:fe00:2',
      '#   EUI-64: - (no prefix known)',
      '#   guard: on',
      '#   IPv6 from: ::, fe80::4000:ff:fe00:2',
      '#   IPv4: not address-filtered (no ip4= given; source MAC checked, DHCP server replies dropped)',
    ]);
    expect(r.stderr).toMatch(/tentative/);
    expect(snapshot(join(fake.sb.stateDir, '..'))).toEqual(before);
  });

  it('--json gives argv, uuid, name and tentative NICs', async () => {
    const r = await start(['--dry-run', '--json', '--name', 'dry2', '--nic', 'br0', '--nic', 'bridge=br1,mac=42:00:00:00:50:00']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.name).toBe('dry2');
    expect(j.argv[0]).toBe(FAKE_QEMU);
    expect(j.nics).toEqual([
      { mac: '42:00:00:00:00:01', tap: expect.stringMatching(/^uc[0-9a-f]{10}n0$/), bridge: 'br0', tentative: true, addresses: expect.objectContaining({ linkLocal: 'fe80::4000:ff:fe00:1' }) },
      { mac: '42:00:00:00:50:00', tap: expect.stringMatching(/^uc[0-9a-f]{10}n1$/), bridge: 'br1', tentative: false, addresses: expect.objectContaining({ linkLocal: 'fe80::4000:ff:fe00:5000' }) },
    ]);
    expect(existsSync(fake.sb.stateDir)).toBe(false);
  });

  it('a named VM gets the same UUID every time', async () => {
    const a = JSON.parse((await start(['--dry-run', '--json', '--name', 'same'])).stdout);
    const b = JSON.parse((await start(['--dry-run', '--json', '--name', 'same'])).stdout);
    expect(a.uuid).toBe(b.uuid);
  });
});

describe('CLI basics', () => {
  it.each([
    [['start', '--memory', 'abc'], /^uncloud-vm: invalid --memory 'abc': expected MiB \(1024\) or a size with M or G/],
    [['start', '--frob'], /^uncloud-vm: unknown option '--frob'/],
    [['nope'], /^uncloud-vm: unknown command 'nope'/],
    [['mac', 'release'], /^uncloud-vm: missing required argument 'mac'/],
    [['start', '--accel', 'hvf'], /^uncloud-vm: option '--accel <accel>' argument 'hvf' is invalid/],
  ])('%j is a one-line usage error, exit 2', async (args, re) => {
    const r = await cli(args, { env: fake.sb.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('--help teaches, exit 0', async () => {
    const r = await cli(['start', '--help'], { env: fake.sb.env });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--nic <spec>/);
    expect(r.stdout).toMatch(/Examples:/);
  });
});
