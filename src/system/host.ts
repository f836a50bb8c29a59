/** Facts about this host that validation needs: memory, CPUs, KVM, bridges. */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { availableParallelism, totalmem } from 'node:os';
import type { HostFacts } from '../core/vm-resources.js';

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

/** The path of an executable as the shell would find it (a name with '/' is taken as a path), or null. */
export function findExecutable(name: string, path = process.env.PATH ?? ''): string | null {
  const candidates = name.includes('/') ? [name] : path.split(delimiter).filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      if (statSync(c).isFile()) {
        accessSync(c, constants.X_OK);
        return c;
      }
    } catch {
      // not here
    }
  }
  return null;
}
