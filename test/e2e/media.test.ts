/**
 * The guest's view of its media, under real qemu: a qcow2 overlay made by `--disk new=…,backing=` boots and
 * reads its base (writes land in the overlay, the base stays as it was), a read-only disk is read-only, and
 * the NoCloud seed of `--cloud-init` is found and read by the guest (label cidata, its UUID, name, keys, MAC).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { guestEnvironment } from '../helpers/e2e.js';
import { bootGuest } from '../helpers/guest.js';
import { qmpCommand } from '../helpers/qmp-raw.js';

const e = guestEnvironment(['br0']);

const img = (...args: string[]) => execFileSync('qemu-img', args, { encoding: 'utf8' });
const qemuIo = (disk: string, cmd: string) => execFileSync('qemu-io', ['-r', '-c', cmd, disk], { encoding: 'utf8' });
const lines = (serial: string, tag: string) => [...serial.matchAll(new RegExp(`^${tag} (.*)$`, 'gm'))].map((m) => m[1]!.trimEnd());

async function powerOff(vm: ReturnType<typeof bootGuest>) {
  const rec = JSON.parse(readFileSync(join(e.sb.runDir, vm.name, 'vm.json'), 'utf8'));
  await qmpCommand(rec.qmpSocket, 'system_powerdown');
  const r = await vm.done;
  expect(r.code, r.stderr).toBe(0);
  return r;
}

describe('disks and the cloud-init seed in a real guest', () => {
  it('a qcow2 overlay made at start boots with its base under it; guest writes land in the overlay only', async () => {
    const dir = join(e.sb.stateDir, '..');
    // The base: a raw image starting with a marker, turned into a qcow2.
    const raw = join(dir, 'base.raw');
    writeFileSync(raw, Buffer.concat([Buffer.from('UNCLOUD-BASE-MARK\n'), Buffer.alloc(64 * 2 ** 20 - 18)]));
    const base = join(dir, 'base.qcow2');
    img('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, base);
    const baseBefore = readFileSync(base);
    const overlay = join(dir, 'vm.qcow2');
    const ro = join(dir, 'ro.img');
    writeFileSync(ro, Buffer.concat([Buffer.from('READ-ONLY-DISK'), Buffer.alloc(2 ** 20 - 14)]));

    const vm = bootGuest(e.guest, e.sb, e.ns.name, 'disky', {
      append: 'uc.diskfill=vda',
      args: ['--disk', `new=${overlay},backing=${base}`, '--disk', `${ro},readonly=on`],
    });
    await vm.waitSerial(/^UNCLOUD-READY/m);
    expect(lines(vm.serial(), 'UNCLOUD-DISK')).toEqual([`vda ${64 * 2 ** 20} ro=0 UNCLOUD-BASE-MARK`, `vdb ${2 ** 20} ro=1 READ-ONLY-DISK`]);
    expect(vm.serial()).toMatch(/^UNCLOUD-DISKFILL vda ok/m);
    expect(vm.serial()).not.toMatch(/format was not specified/);
    const r = await powerOff(vm);
    expect(r.stderr).not.toMatch(/format was not specified|WARNING/);

    const info = JSON.parse(img('info', '--output=json', overlay));
    expect(info).toMatchObject({ format: 'qcow2', 'backing-filename': base, 'backing-filename-format': 'qcow2' });
    expect(qemuIo(overlay, 'read -P 0x5a 4096 4096')).toMatch(/read 4096\/4096 bytes/);
    expect(qemuIo(base, 'read -P 0 4096 4096')).toMatch(/read 4096\/4096 bytes/);
    expect(readFileSync(base)).toEqual(baseBefore);
  });

  it('the guest mounts the NoCloud seed and reads its UUID, hostname, key, user-data and its own MAC', async () => {
    const dir = join(e.sb.stateDir, '..');
    writeFileSync(join(dir, 'keys.pub'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGuest ops@laptop\n');
    writeFileSync(join(dir, 'ud.yaml'), '#cloud-config\nruncmd: [echo hello]\n');
    const vm = bootGuest(e.guest, e.sb, e.ns.name, 'seedy', {
      args: ['--cloud-init', `ssh-keys=${join(dir, 'keys.pub')},user-data=${join(dir, 'ud.yaml')}`],
    });
    await vm.waitSerial(/^UNCLOUD-READY/m);
    const serial = vm.serial();
    const rec = JSON.parse(readFileSync(join(e.sb.runDir, 'seedy', 'vm.json'), 'utf8'));
    const mac = /^UNCLOUD-NIC eth0 (\S+)/m.exec(serial)![1]!;
    expect(mac).toBe(rec.nics[0].mac);
    expect(lines(serial, 'UNCLOUD-SEED-DEV')).toEqual(['vda cidata']);
    const seed = lines(serial, 'UNCLOUD-SEED');
    expect(seed).toEqual([
      `meta-data: instance-id: "${rec.uuid}"`,
      'meta-data: local-hostname: "seedy"',
      'meta-data: public-keys:',
      'meta-data:   - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGuest ops@laptop"',
      'user-data: #cloud-config',
      'user-data: runcmd: [echo hello]',
      'network-config: version: 2',
      'network-config: ethernets:',
      'network-config:   nic0:',
      'network-config:     match:',
      `network-config:       macaddress: "${mac}"`,
      'network-config:     dhcp4: true',
    ]);
    expect(lines(serial, 'UNCLOUD-DISK')[0]).toMatch(/^vda \d+ ro=1 /);
    await powerOff(vm);
  });
});
