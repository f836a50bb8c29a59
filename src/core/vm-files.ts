/** Where a VM's files are: its run files (one directory per VM under the run dir) and its logs (state side). */
import { join } from 'node:path';

/** Where a VM's run files live: one directory per VM under the run dir. */
export interface VmRunFiles {
  dir: string;
  /** The qemu command as a shell script that execs qemu (what a systemd unit runs). */
  execScript: string;
  /** uncloud-vm's own QMP socket. */
  qmpSocket: string;
  /** The QMP socket left for the operator. */
  operatorQmpSocket: string;
  /** The serial console, for `uncloud-vm console`. */
  consoleSocket: string;
  pidfile: string;
  /** The VNC display's socket (--vnc). */
  vncSocket: string;
  /** The NoCloud seed image (--cloud-init), built at each start. */
  seed: string;
  record: string;
  /** Who is rebooting (or, under -no-reboot, resetting) the VM, its pid and start time, while qemu's power actions are changed. */
  rebootMark: string;
  /** Held by `stop` and `reboot` while they act: one of them at a time takes a VM through its power-off. */
  powerLock: string;
  ifup: (index: number) => string;
  ifdown: (index: number) => string;
}

export function vmRunFiles(runDir: string, name: string): VmRunFiles {
  const dir = join(runDir, name);
  return {
    dir,
    execScript: join(dir, 'exec.sh'),
    qmpSocket: join(dir, 'qmp.sock'),
    operatorQmpSocket: join(dir, 'qmp-operator.sock'),
    consoleSocket: join(dir, 'console.sock'),
    pidfile: join(dir, 'qemu.pid'),
    record: join(dir, 'vm.json'),
    rebootMark: join(dir, 'reboot.json'),
    powerLock: join(dir, 'power.lock'),
    vncSocket: join(dir, 'vnc.sock'),
    seed: join(dir, 'seed.iso'),
    ifup: (i) => join(dir, `ifup-${i}.sh`),
    ifdown: (i) => join(dir, `ifdown-${i}.sh`),
  };
}

/**
 * A VM's logs: on the state side, so they outlive the run dir (removed when the VM ends) and a reboot of the
 * host; kept across restarts of the VM, and removed only by `forget`.
 */
export interface VmLogFiles {
  dir: string;
  /** What the guest wrote on its serial console. */
  serial: string;
  /** qemu's stderr. */
  qemu: string;
}

export function vmLogFiles(stateDir: string, name: string): VmLogFiles {
  const dir = join(stateDir, 'logs', name);
  return { dir, serial: join(dir, 'serial.log'), qemu: join(dir, 'qemu.log') };
}
