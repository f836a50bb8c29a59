/** Facts about this host that validation needs: memory, CPUs, KVM, bridges. */
import { accessSync, constants, existsSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import type { HostFacts } from '../core/vm-spec.js';

export function hostFacts(): HostFacts {
  return {
    totalMemoryMiB: Math.floor(totalmem() / 2 ** 20),
    cpus: availableParallelism(),
    kvmUsable: kvmUsable(),
  };
}

function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Whether a Linux bridge of that name exists in this network namespace. */
export function bridgeExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}/bridge`);
}
