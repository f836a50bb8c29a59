/** Memory, cores, CPU model and accelerator against the host's facts, by tables. */
import { describe, expect, it } from 'vitest';
import { type HostFacts, parseAccel, parseCores, parseMemory, validateCpu } from '../../src/core/vm-resources.js';

const host: HostFacts = { totalMemoryMiB: 8192, cpus: 4, kvmUsable: false };

describe('parseMemory', () => {
  it.each([
    ['1024', 1024],
    ['2048M', 2048],
    ['2048MiB', 2048],
    ['1G', 1024],
    ['2g', 2048],
    ['4GiB', 4096],
    ['8G', 8192],
  ])('--memory %s is %d MiB', (text, mib) => {
    expect(parseMemory(text, host)).toBe(mib);
  });
  it.each([
    ['15', /at least 16 MiB/],
    ['8193', /this host has 8192 MiB in all/],
    ['1K', /expected MiB \(1024\) or a size with M or G/],
    ['', /invalid --memory ''/],
  ])('refuses %j', (text, re) => {
    expect(() => parseMemory(text, host)).toThrow(re);
  });
});

describe('parseCores', () => {
  it('more cores than the host has: allowed, with a warning', () => {
    expect(parseCores('6', host)).toEqual({ cores: 6, warning: "warning: --cores 6 is more than this host's 4 CPUs; the guest's vCPUs will share them" });
    expect(parseCores('4', host)).toEqual({ cores: 4 });
    expect(parseCores('1024', host).cores).toBe(1024);
  });
  it.each(['0', '1025', '1.5', '-1', ' 2', '0x2'])('refuses %j', (text) => {
    expect(() => parseCores(text, host)).toThrow(/expected a whole number from 1 to 1024/);
  });
});

describe('validateCpu', () => {
  it.each([
    ['host', 'kvm'],
    ['max', 'tcg'],
    ['Skylake-Client-v4,-hle,+pcid,kvm=off', 'tcg'],
  ] as const)('%s under %s', (cpu, accel) => {
    expect(validateCpu(cpu, accel)).toBe(cpu);
  });
  it('host needs kvm', () => {
    expect(() => validateCpu('host,-hle', 'tcg')).toThrow(/--cpu host needs KVM \(the accelerator is tcg\); use --cpu max under tcg/);
  });
});

describe('parseAccel', () => {
  it.each([
    ['kvm', false, { accel: 'kvm' }],
    ['tcg', true, { accel: 'tcg' }],
    ['auto', true, { accel: 'kvm', note: 'accel auto: using kvm (/dev/kvm is usable)' }],
    ['auto', false, { accel: 'tcg', note: 'accel auto: using tcg (/dev/kvm is not usable)' }],
  ])('%s with kvm usable=%s', (text, kvmUsable, want) => {
    expect(parseAccel(text, { ...host, kvmUsable })).toEqual(want);
  });
  it('refuses anything else', () => {
    expect(() => parseAccel('hvf', host)).toThrow(/invalid --accel 'hvf': expected auto, kvm or tcg/);
  });
});
