/**
 * The plan back as start options and command-line arguments: the half of the round trip a unit carries (its
 * `hook prepare` parses the arguments into the same plan again; test/core/plan-arguments.test.ts holds it to that).
 */
import { formatDisk } from './disk-spec.js';
import { nicText } from './nic-request.js';
import { formatCloudInit } from './nocloud.js';
import type { StartOptions, VmPlan } from './vm-plan.js';

/**
 * The plan back as start options: planVm(planToStartOptions(plan)) is the same plan (a property test holds
 * it to that). A unit carries a VM this way, so its ExecStartPre rebuilds exactly the VM that was planned.
 */
export function planToStartOptions(plan: VmPlan): StartOptions {
  const opts: StartOptions = {
    name: plan.name,
    uuid: plan.uuid,
    memory: String(plan.memoryMiB),
    cores: String(plan.cores),
    // Chosen automatically: the unit chooses again on the host where it runs.
    accel: plan.accelNote !== undefined ? 'auto' : plan.accel,
    machine: plan.machine,
    qemu: plan.qemu,
    nic: plan.nics.map(nicText),
    disk: plan.disks.map(formatDisk),
    console: plan.console,
    noReboot: plan.noReboot,
  };
  if (plan.cpu !== undefined) opts.cpu = plan.cpu;
  if (plan.vnc) opts.vnc = true;
  if (plan.cloudInit !== undefined) opts.cloudInit = formatCloudInit(plan.cloudInit);
  if (plan.cdrom !== undefined) opts.cdrom = plan.cdrom;
  if (plan.kernel !== undefined) opts.kernel = plan.kernel;
  if (plan.initrd !== undefined) opts.initrd = plan.initrd;
  if (plan.append !== undefined) opts.append = plan.append;
  return opts;
}

/** Start options as command-line arguments (the inverse of the CLI's option parsing). */
export function startOptionsToArgs(opts: StartOptions): string[] {
  const args: string[] = [];
  const one = (flag: string, v: string | undefined) => {
    if (v !== undefined) args.push(flag, v);
  };
  one('--name', opts.name);
  one('--uuid', opts.uuid);
  one('--memory', opts.memory);
  one('--cores', opts.cores);
  one('--accel', opts.accel);
  one('--machine', opts.machine);
  one('--qemu', opts.qemu);
  for (const n of opts.nic ?? []) args.push('--nic', n);
  one('--cdrom', opts.cdrom);
  for (const d of opts.disk ?? []) args.push('--disk', d);
  one('--kernel', opts.kernel);
  one('--initrd', opts.initrd);
  one('--append', opts.append);
  if (opts.console) args.push('--console');
  if (opts.noReboot) args.push('--no-reboot');
  one('--cpu', opts.cpu);
  if (opts.vnc) args.push('--vnc');
  one('--cloud-init', opts.cloudInit);
  return args;
}
