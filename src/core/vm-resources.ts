/**
 * What a VM takes from its host: memory, cores, the CPU model and the accelerator, each parsed against the
 * host's facts (which come in as an argument: nothing here reads the host).
 */
import { printable, usageError } from './errors.js';
import type { Accel } from './qemu-argv.js';

export interface HostFacts {
  totalMemoryMiB: number;
  cpus: number;
  kvmUsable: boolean;
}

/** A QEMU CPU model and optional features: host, max, Skylake-Client-v4,-hle,+pcid, host,kvm=off. */
const CPU_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(,[+-]?[A-Za-z0-9][A-Za-z0-9._-]{0,63}(=[A-Za-z0-9._-]{1,32})?)*$/;
/** QEMU's own upper bound for -smp on x86 machine types. */
export const MAX_CORES = 1024;

/** "1024" (MiB), "2048M", "1G", "1GiB" → MiB. */
export function parseMemory(text: string, host: HostFacts): number {
  const m = /^([0-9]+)(M|MiB|G|GiB)?$/i.exec(text);
  if (!m) {
    throw usageError(`invalid --memory '${printable(text)}': expected MiB (1024) or a size with M or G (2048M, 1G)`);
  }
  const mib = Number(m[1]) * (m[2] && /^g/i.test(m[2]) ? 1024 : 1);
  if (mib < 16) throw usageError(`invalid --memory ${text}: at least 16 MiB`);
  if (mib > host.totalMemoryMiB) {
    throw usageError(`invalid --memory ${text}: this host has ${host.totalMemoryMiB} MiB in all`);
  }
  return mib;
}

/** More cores than the host has is allowed (QEMU overcommits): the caller gets a warning to print. */
export function parseCores(text: string, host: HostFacts): { cores: number; warning?: string } {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1 || Number(text) > MAX_CORES) {
    throw usageError(`invalid --cores '${printable(text)}': expected a whole number from 1 to ${MAX_CORES}`);
  }
  const cores = Number(text);
  if (cores > host.cpus) {
    return { cores, warning: `warning: --cores ${cores} is more than this host's ${host.cpus} CPUs; the guest's vCPUs will share them` };
  }
  return { cores };
}

/** --cpu: a model QEMU knows, with features; `host` passes the host CPU through and needs KVM. */
export function validateCpu(text: string, accel: Accel): string {
  if (!CPU_RE.test(text)) {
    throw usageError(`invalid --cpu '${printable(text)}': expected a QEMU CPU model such as host, max or Skylake-Client, optionally with ,+feature or ,-feature`);
  }
  if (text.split(',')[0] === 'host' && accel !== 'kvm') {
    throw usageError(`--cpu host needs KVM (the accelerator is ${accel}); use --cpu max under tcg`);
  }
  return text;
}

/** --accel auto|kvm|tcg; auto says which it chose and why (the note a start prints). */
export function parseAccel(text: string, host: HostFacts): { accel: Accel; note?: string } {
  if (text === 'kvm' || text === 'tcg') return { accel: text };
  if (text === 'auto') {
    return host.kvmUsable
      ? { accel: 'kvm', note: 'accel auto: using kvm (/dev/kvm is usable)' }
      : { accel: 'tcg', note: 'accel auto: using tcg (/dev/kvm is not usable)' };
  }
  throw usageError(`invalid --accel '${printable(text)}': expected auto, kvm or tcg`);
}
