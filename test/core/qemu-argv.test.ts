import { describe, expect, it } from 'vitest';
import { buildQemuArgv, formatCommand, type VmSpec } from '../../src/core/qemu-argv.js';
import { shellQuote } from '../../src/core/quote.js';
import { tapName } from '../../src/core/tap-name.js';

const UUID = '0f0e0d0c-0b0a-4908-8706-050403020100';

function spec(over: Partial<VmSpec> = {}): VmSpec {
  return {
    qemu: 'qemu-system-x86_64',
    name: 'vm1',
    uuid: UUID,
    machine: 'pc',
    accel: 'tcg',
    memoryMiB: 1024,
    cores: 2,
    nics: [{ index: 0, mac: '42:00:00:00:00:01', tap: 'uc0f0e0d0c0bn0', bridge: 'br0', ifup: '/run/u/vm1/ifup-0.sh', ifdown: '/run/u/vm1/ifdown-0.sh' }],
    disks: [],
    qmpSocket: '/run/u/vm1/qmp.sock',
    operatorQmpSocket: '/run/u/vm1/qmp-operator.sock',
    pidfile: '/run/u/vm1/qemu.pid',
    console: false,
    consoleSocket: '/run/u/vm1/console.sock',
    serialLog: '/var/lib/u/logs/vm1/serial.log',
    noReboot: false,
    ...over,
  };
}

/** The value following an option, for every occurrence. */
function values(argv: string[], opt: string): string[] {
  return argv.flatMap((a, i) => (a === opt ? [argv[i + 1]!] : []));
}

describe('buildQemuArgv', () => {
  it('one NIC: the base shape', () => {
    expect(buildQemuArgv(spec())).toEqual([
      'qemu-system-x86_64',
      '-name', 'vm1',
      '-uuid', UUID,
      '-machine', 'pc,accel=tcg',
      '-m', '1024',
      '-smp', '2',
      '-display', 'none',
      '-monitor', 'none',
      '-chardev', 'socket,id=serial0,path=/run/u/vm1/console.sock,server=on,wait=off,logfile=/var/lib/u/logs/vm1/serial.log,logappend=on',
      '-serial', 'chardev:serial0',
      '-qmp', 'unix:/run/u/vm1/qmp.sock,server=on,wait=off',
      '-qmp', 'unix:/run/u/vm1/qmp-operator.sock,server=on,wait=off',
      '-pidfile', '/run/u/vm1/qemu.pid',
      '-netdev', 'tap,id=net0,ifname=uc0f0e0d0c0bn0,script=/run/u/vm1/ifup-0.sh,downscript=/run/u/vm1/ifdown-0.sh',
      '-device', 'virtio-net-pci,netdev=net0,id=nic0,mac=42:00:00:00:00:01',
    ]);
  });

  it('several NICs: one -netdev/-device pair each, ids matching', () => {
    const nics = [0, 1, 2].map((i) => ({
      index: i,
      mac: `42:00:00:00:00:0${i + 1}`,
      tap: tapName(UUID, i),
      bridge: `br${i}`,
      ifup: `/r/ifup-${i}.sh`,
      ifdown: `/r/ifdown-${i}.sh`,
    }));
    const argv = buildQemuArgv(spec({ nics }));
    expect(values(argv, '-netdev')).toEqual([0, 1, 2].map((i) => `tap,id=net${i},ifname=${tapName(UUID, i)},script=/r/ifup-${i}.sh,downscript=/r/ifdown-${i}.sh`));
    expect(values(argv, '-device')).toEqual([0, 1, 2].map((i) => `virtio-net-pci,netdev=net${i},id=nic${i},mac=42:00:00:00:00:0${i + 1}`));
  });

  it.each<[string, Partial<VmSpec>, string, string[]]>([
    ['cdrom', { cdrom: '/iso/alpine.iso' }, '-drive', ['file=/iso/alpine.iso,media=cdrom']],
    [
      'disks: the format always given, readonly and cache when asked',
      { disks: [{ path: '/d/a.qcow2', format: 'qcow2', readonly: false }, { path: '/d/b.raw', format: 'raw', readonly: true, cache: 'none' }] },
      '-drive',
      ['file=/d/a.qcow2,if=virtio,format=qcow2', 'file=/d/b.raw,if=virtio,format=raw,readonly=on,cache=none'],
    ],
    [
      'the cloud-init seed after the disks, read-only raw',
      { disks: [{ path: '/d/a.qcow2', format: 'qcow2', readonly: false }], seed: '/run/u/vm1/seed.iso' },
      '-drive',
      ['file=/d/a.qcow2,if=virtio,format=qcow2', 'file=/run/u/vm1/seed.iso,if=virtio,format=raw,readonly=on'],
    ],
    ['vnc on a unix socket', { vncSocket: '/run/u/vm1/vnc.sock' }, '-vnc', ['unix:/run/u/vm1/vnc.sock']],
    ['cpu model', { cpu: 'host' }, '-cpu', ['host']],
    ['kernel', { kernel: '/k/vmlinuz' }, '-kernel', ['/k/vmlinuz']],
    ['initrd', { kernel: '/k/vmlinuz', initrd: '/k/initrd' }, '-initrd', ['/k/initrd']],
    ['append', { kernel: '/k/vmlinuz', append: 'console=ttyS0 ip=10.0.0.2' }, '-append', ['console=ttyS0 ip=10.0.0.2']],
    ['kvm', { accel: 'kvm' }, '-machine', ['pc,accel=kvm']],
    ['q35', { machine: 'q35' }, '-machine', ['q35,accel=tcg']],
    ['console on the terminal, logged', { console: true }, '-chardev', ['stdio,id=serial0,mux=on,logfile=/var/lib/u/logs/vm1/serial.log,logappend=on']],
    ['console: serial and monitor share the terminal', { console: true }, '-mon', ['chardev=serial0']],
  ])('%s', (_label, over, opt, want) => {
    expect(values(buildQemuArgv(spec(over)), opt)).toEqual(want);
  });

  it('a NIC with an MTU offers it to the guest (virtio-net host_mtu)', () => {
    const nics = [{ ...spec().nics[0]!, mtu: 1430 }];
    expect(values(buildQemuArgv(spec({ nics })), '-device')).toEqual(['virtio-net-pci,netdev=net0,id=nic0,mac=42:00:00:00:00:01,host_mtu=1430']);
  });

  it('no boot media, no reboot flag unless asked', () => {
    const argv = buildQemuArgv(spec());
    expect(argv).not.toContain('-drive');
    expect(argv).not.toContain('-kernel');
    expect(argv).not.toContain('-no-reboot');
    expect(argv).not.toContain('-vnc');
    expect(argv).not.toContain('-cpu');
    expect(buildQemuArgv(spec({ noReboot: true }))).toContain('-no-reboot');
  });

  it('doubles commas in values inside option lists, so a value cannot add a sub-option', () => {
    const disks = [{ path: '/d/b,readonly=off.img', format: 'raw' as const, readonly: true }];
    const argv = buildQemuArgv(spec({ cdrom: '/iso/a,readonly=off.iso', name: 'x', qmpSocket: '/r/a,b/qmp.sock', disks, vncSocket: '/r/a,b/vnc.sock' }));
    expect(values(argv, '-drive')).toEqual(['file=/iso/a,,readonly=off.iso,media=cdrom', 'file=/d/b,,readonly=off.img,if=virtio,format=raw,readonly=on']);
    expect(values(argv, '-vnc')).toEqual(['unix:/r/a,,b/vnc.sock']);
    expect(values(argv, '-qmp')).toEqual(['unix:/r/a,,b/qmp.sock,server=on,wait=off', 'unix:/run/u/vm1/qmp-operator.sock,server=on,wait=off']);
  });

  it('is deterministic', () => {
    expect(buildQemuArgv(spec())).toEqual(buildQemuArgv(spec()));
  });
});

describe('formatCommand', () => {
  it('prints one option per line with continuations, shell-quoted', () => {
    const text = formatCommand(['qemu', '-name', 'a b', '-m', '64', '-no-reboot', '-append', "it's"], shellQuote);
    expect(text).toBe(["qemu \\", "  -name 'a b' \\", '  -m 64 \\', '  -no-reboot \\', `  -append 'it'\\''s'`].join('\n'));
  });
});

describe('tapName', () => {
  it.each([0, 1, 7])('is deterministic and at most 15 characters (nic %d)', (i) => {
    const name = tapName(UUID, i);
    expect(name).toBe(`uc0f0e0d0c0bn${i}`);
    expect(name.length).toBeLessThanOrEqual(15);
  });
  it('differs between VMs and NICs', () => {
    expect(tapName(UUID, 0)).not.toBe(tapName(UUID, 1));
    expect(tapName('aaaaaaaa-0000-4000-8000-000000000000', 0)).not.toBe(tapName(UUID, 0));
  });
});
