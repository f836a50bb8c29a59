/** Where a VM's files are: every run file inside the VM's own run dir, the logs on the state side. */
import { describe, expect, it } from 'vitest';
import { vmLogFiles, vmRunFiles } from '../../src/core/vm-files.js';

describe('vmRunFiles', () => {
  it('puts every file of a VM in its own directory under the run dir', () => {
    const f = vmRunFiles('/run/uncloud-vm', 'web1');
    expect(f).toMatchObject({
      dir: '/run/uncloud-vm/web1',
      execScript: '/run/uncloud-vm/web1/exec.sh',
      qmpSocket: '/run/uncloud-vm/web1/qmp.sock',
      operatorQmpSocket: '/run/uncloud-vm/web1/qmp-operator.sock',
      consoleSocket: '/run/uncloud-vm/web1/console.sock',
      pidfile: '/run/uncloud-vm/web1/qemu.pid',
      record: '/run/uncloud-vm/web1/vm.json',
      vncSocket: '/run/uncloud-vm/web1/vnc.sock',
      seed: '/run/uncloud-vm/web1/seed.iso',
    });
    expect([f.ifup(0), f.ifdown(7)]).toEqual(['/run/uncloud-vm/web1/ifup-0.sh', '/run/uncloud-vm/web1/ifdown-7.sh']);
    // Two VMs share no path.
    const g = vmRunFiles('/run/uncloud-vm', 'web2');
    const paths = (x: typeof f) => Object.values(x).filter((v): v is string => typeof v === 'string');
    expect(paths(f).filter((p) => paths(g).includes(p))).toEqual([]);
  });
});

describe('vmLogFiles', () => {
  it('keeps the logs under the state dir, apart from the run dir', () => {
    expect(vmLogFiles('/var/lib/uncloud-vm', 'web1')).toEqual({
      dir: '/var/lib/uncloud-vm/logs/web1',
      serial: '/var/lib/uncloud-vm/logs/web1/serial.log',
      qemu: '/var/lib/uncloud-vm/logs/web1/qemu.log',
    });
  });
});
