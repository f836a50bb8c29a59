/**
 * Disks, the cloud-init seed and the VNC socket through the built binary: a fake qemu records its argv, the
 * real qemu-img and genisoimage make the files. (The guest's view of them is in test/e2e/media.test.ts.)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { cli, type RunOptions, waitFor } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';

const fake = fakeQemuEnvironment();
let dir: string;
let log: string;
beforeEach(() => {
  dir = join(fake.sb.stateDir, '..');
  log = join(dir, 'argv.log');
});

const start = (args: string[], env: NodeJS.ProcessEnv = {}, onSpawn?: RunOptions['onSpawn']) => fake.start(args, { FAKE_QEMU_LOG: log, ...env }, onSpawn);
const argv = () => readFileSync(log, 'utf8').trim().split('\n');
const drives = () => argv().flatMap((a, i, all) => (all[i - 1] === '-drive' ? [a] : []));
const img = (...args: string[]) => execFileSync('qemu-img', args, { encoding: 'utf8' });
const info = (path: string) => JSON.parse(img('info', '-U', '--output=json', path)) as { format: string; 'virtual-size': number; 'backing-filename'?: string };

describe('--disk', () => {
  it('detects raw and qcow2, passes format, readonly and cache on: qemu never guesses a format', async () => {
    img('create', '-q', '-f', 'qcow2', join(dir, 'a.qcow2'), '64M');
    img('create', '-q', '-f', 'raw', join(dir, 'b.img'), '1M');
    const r = await start(['--name', 'd1', '--disk', join(dir, 'a.qcow2'), '--disk', `${join(dir, 'b.img')},readonly=on,cache=writethrough`]);
    expect(r.code, r.stderr).toBe(0);
    expect(drives()).toEqual([`file=${join(dir, 'a.qcow2')},if=virtio,format=qcow2`, `file=${join(dir, 'b.img')},if=virtio,format=raw,readonly=on,cache=writethrough`]);
  });

  it('an explicit format is used as given (here on an empty file qemu-img would call raw)', async () => {
    writeFileSync(join(dir, 'c.img'), '');
    const r = await start(['--disk', `${join(dir, 'c.img')},format=qcow2`]);
    expect(r.code, r.stderr).toBe(0);
    expect(drives()).toEqual([`file=${join(dir, 'c.img')},if=virtio,format=qcow2`]);
  });

  it('new=,size= makes a qcow2 of that size (0600), then uses it as it is on the next start', async () => {
    const disk = join(dir, 'web1.qcow2');
    const r = await start(['--name', 'web1', '--disk', `new=${disk},size=2G`]);
    expect(r.code, r.stderr).toBe(0);
    expect(info(disk)).toMatchObject({ format: 'qcow2', 'virtual-size': 2 * 2 ** 30 });
    expect(statSync(disk).mode & 0o777).toBe(0o600);
    expect(drives()).toEqual([`file=${disk},if=virtio,format=qcow2`]);
    execFileSync('qemu-io', ['-c', 'write -P 0x5a 0 4k', disk]);
    const again = await start(['--name', 'web1', '--disk', `new=${disk},size=2G`]);
    expect(again.code, again.stderr).toBe(0);
    expect(execFileSync('qemu-io', ['-c', 'read -P 0x5a 0 4k', disk], { encoding: 'utf8' })).toMatch(/read 4096\/4096 bytes/);
  });

  it('new=,backing= makes an overlay of the base (relative paths made absolute), the base untouched', async () => {
    const base = join(dir, 'base.qcow2');
    img('create', '-q', '-f', 'qcow2', base, '256M');
    const before = readFileSync(base);
    const r = await cli(['start', '--accel', 'tcg', '--memory', '64', '--name', 'ov', '--disk', 'new=ov.qcow2,backing=base.qcow2'], {
      env: { ...fake.sb.env, FAKE_QEMU_LOG: log },
      netns: fake.ns.name,
      cwd: dir,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(info(join(dir, 'ov.qcow2'))).toMatchObject({ format: 'qcow2', 'virtual-size': 256 * 2 ** 20, 'backing-filename': base });
    expect(readFileSync(base)).toEqual(before);
    expect(drives()).toEqual([`file=${join(dir, 'ov.qcow2')},if=virtio,format=qcow2`]);
  });

  it('an existing new= disk that is an overlay of another base is refused, and left alone', async () => {
    img('create', '-q', '-f', 'qcow2', join(dir, 'b1.qcow2'), '64M');
    img('create', '-q', '-f', 'qcow2', join(dir, 'b2.qcow2'), '64M');
    img('create', '-q', '-f', 'qcow2', '-b', join(dir, 'b1.qcow2'), '-F', 'qcow2', join(dir, 'o.qcow2'));
    const r = await start(['--disk', `new=${join(dir, 'o.qcow2')},backing=${join(dir, 'b2.qcow2')}`]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      `uncloud-vm: --disk new=${join(dir, 'o.qcow2')}: the file exists and is an overlay of ${join(dir, 'b1.qcow2')}, not of ${join(dir, 'b2.qcow2')}; pick another path or drop backing=`,
    );
    expect(info(join(dir, 'o.qcow2'))['backing-filename']).toBe(join(dir, 'b1.qcow2'));
  });

  it('a missing disk is one clear line, exit 2, and says how to create one', async () => {
    const r = await start(['--disk', join(dir, 'nope.qcow2')]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`uncloud-vm: --disk ${join(dir, 'nope.qcow2')}: no such file (to create one: --disk new=${join(dir, 'nope.qcow2')},size=<n>G)`);
  });

  it('a vmdk is refused with a way out', async () => {
    img('create', '-q', '-f', 'vmdk', join(dir, 'x.vmdk'), '16M');
    const r = await start(['--disk', join(dir, 'x.vmdk')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/x\.vmdk is a vmdk image; uncloud-vm runs raw and qcow2 disks \(convert it: qemu-img convert -O qcow2 /);
  });

  it('a dry run shows the new disk and makes nothing', async () => {
    const disk = join(dir, 'later.qcow2');
    const r = await cli(['start', '--dry-run', '--accel', 'tcg', '--disk', `new=${disk},size=8G`], { env: fake.sb.env });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`-drive file=${disk},if=virtio,format=qcow2`);
    expect(r.stderr).toContain(`note: disk ${disk} does not exist yet; start would create it`);
    expect(existsSync(disk)).toBe(false);
  });
});

describe('--cloud-init', () => {
  const isoFile = (iso: string, name: string) => execFileSync('isoinfo', ['-R', '-i', iso, '-x', `/${name}`], { encoding: 'utf8' });

  it('a NoCloud seed (label cidata) with the UUID, name, keys, user-data and the leased MAC, attached read-only', async () => {
    writeFileSync(join(dir, 'keys.pub'), '# ops\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA ops@laptop\n');
    writeFileSync(join(dir, 'ud.yaml'), '#cloud-config\npackages: [htop]\n');
    let copy = '';
    const seed = join(fake.sb.runDir, 'ci1', 'seed.iso');
    const run = start(['--name', 'ci1', '--cloud-init', `ssh-keys=${join(dir, 'keys.pub')},user-data=${join(dir, 'ud.yaml')}`], { FAKE_QEMU_SLEEP: '30' }, (child) => {
      void waitFor('the seed', () => existsSync(log) && existsSync(seed)).then(() => {
        copy = join(dir, 'seed-copy.iso');
        writeFileSync(copy, readFileSync(seed));
        expect(statSync(seed).mode & 0o777).toBe(0o600);
        child.kill('SIGTERM');
      });
    });
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    const uuid = argv()[argv().indexOf('-uuid') + 1]!;
    const mac = /mac=([0-9a-f:]+)/.exec(argv().join(' '))![1]!;
    expect(drives()).toEqual([`file=${seed},if=virtio,format=raw,readonly=on`]);
    expect(execFileSync('isoinfo', ['-d', '-i', copy], { encoding: 'utf8' })).toMatch(/^Volume id: cidata$/m);
    expect(isoFile(copy, 'meta-data')).toBe(`instance-id: "${uuid}"\nlocal-hostname: "ci1"\npublic-keys:\n  - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA ops@laptop"\n`);
    expect(isoFile(copy, 'user-data')).toBe('#cloud-config\npackages: [htop]\n');
    expect(isoFile(copy, 'network-config')).toContain(`macaddress: "${mac}"`);
    expect(existsSync(seed)).toBe(false);
  });

  it('genisoimage missing: refused before anything is leased', async () => {
    const r = await cli(['start', '--accel', 'tcg', '--cloud-init', 'on'], { env: { ...fake.sb.env, PATH: '/nonexistent' } });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('uncloud-vm: genisoimage not found; --cloud-init needs it (Debian: apt-get install genisoimage)');
    const held = JSON.parse((await cli(['mac', 'list', '--json'], { env: fake.sb.env })).stdout);
    expect(held).toEqual([]);
  });
});

describe('--vnc', () => {
  it('a unix socket in the run dir, said on stderr; never a TCP port', async () => {
    const r = await start(['--name', 'gfx', '--vnc']);
    expect(r.code, r.stderr).toBe(0);
    const sock = join(fake.sb.runDir, 'gfx', 'vnc.sock');
    expect(argv()[argv().indexOf('-vnc') + 1]).toBe(`unix:${sock}`);
    expect(r.stderr).toContain(`uncloud-vm: VNC display: ${sock}`);
  });
});
