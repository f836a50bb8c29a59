/** planVm by tables: defaults, identity, every refusal; specFor: what of the plan reaches the VmSpec. */
import { v5 } from 'uuid';
import { describe, expect, it } from 'vitest';
import { vmLogFiles, vmRunFiles } from '../../src/core/vm-files.js';
import { NAME_NAMESPACE } from '../../src/core/vm-identity.js';
import { planVm, specFor } from '../../src/core/vm-plan.js';
import type { HostFacts } from '../../src/core/vm-resources.js';

const host: HostFacts = { totalMemoryMiB: 8192, cpus: 4, kvmUsable: false };
const defaults = { bridge: 'br0', qemu: 'qemu-system-x86_64' };
const fixedUuid = { random: () => '11111111-2222-4333-8444-555555555555', forName: (n: string) => v5(n, NAME_NAMESPACE) };

describe('planVm', () => {
  it('defaults: 1024 MiB, 1 core, a random UUID, one NIC on the default bridge, tcg without kvm', () => {
    const plan = planVm({}, host, defaults, fixedUuid);
    expect(plan).toMatchObject({
      name: 'uncloud-11111111-2222-4333-8444-555555555555',
      uuid: '11111111-2222-4333-8444-555555555555',
      memoryMiB: 1024,
      cores: 1,
      accel: 'tcg',
      machine: 'pc',
      nics: [{ index: 0, bridge: 'br0' }],
    });
    expect(plan.accelNote).toMatch(/tcg/);
  });

  it('auto picks kvm when /dev/kvm is usable', () => {
    expect(planVm({}, { ...host, kvmUsable: true }, defaults, fixedUuid).accel).toBe('kvm');
  });

  it('a named VM gets the v5 UUID of its name, stable across calls', () => {
    const a = planVm({ name: 'web1' }, host, defaults, fixedUuid);
    const b = planVm({ name: 'web1' }, host, defaults, { ...fixedUuid, random: () => 'other' });
    expect(a.uuid).toBe(b.uuid);
    expect(a.uuid).toBe(v5('web1', NAME_NAMESPACE));
    expect(a.uuid).toMatch(/^[0-9a-f-]{14}5/);
  });

  it('an explicit --uuid wins over the name', () => {
    const plan = planVm({ name: 'web1', uuid: 'AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE' }, host, defaults, fixedUuid);
    expect(plan.uuid).toBe('aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee');
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    ['memory 0', { memory: '0' }, /--memory 0: at least 16 MiB/],
    ['memory negative', { memory: '-5' }, /invalid --memory '-5'/],
    ['memory 1e9', { memory: '1e9' }, /expected MiB \(1024\) or a size with M or G/],
    ['memory abc', { memory: 'abc' }, /expected MiB/],
    ['memory 1T', { memory: '1T' }, /expected MiB/],
    ['memory 1.5G', { memory: '1.5G' }, /expected MiB/],
    ['memory beyond host', { memory: '9000' }, /host has 8192 MiB/],
    ['memory 9G beyond host', { memory: '9G' }, /--memory 9G: this host has 8192 MiB/],
    ['cores 0', { cores: '0' }, /from 1 to 1024/],
    ['cores 1.5', { cores: '1.5' }, /from 1 to 1024/],
    ['cores 1025', { cores: '1025' }, /from 1 to 1024/],
    ['cpu with a space', { cpu: 'host kvm' }, /invalid --cpu/],
    ['cpu with a shell word', { cpu: '$(id)' }, /invalid --cpu/],
    ['cpu host under tcg', { cpu: 'host', accel: 'tcg' }, /--cpu host needs KVM \(the accelerator is tcg\); use --cpu max/],
    ['cpu host when auto finds no kvm', { cpu: 'host,-hle' }, /--cpu host needs KVM/],
    ['the same disk twice', { disk: ['/d/a.img', 'file=/d/a.img,readonly=on'] }, /--disk \/d\/a\.img is given twice/],
    ['a bad disk', { disk: ['/d/a.img,format=vmdk'] }, /format is raw or qcow2/],
    ['a bad cloud-init', { cloudInit: 'yes' }, /invalid --cloud-init 'yes'/],
    ['name with slash', { name: 'a/b' }, /invalid VM name/],
    ['name ..', { name: '..' }, /invalid VM name/],
    ['name with space', { name: 'a b' }, /invalid VM name/],
    ['name too long', { name: 'a'.repeat(65) }, /invalid VM name/],
    ['uuid', { uuid: 'not-a-uuid' }, /invalid --uuid/],
    ['accel', { accel: 'hvf' }, /expected auto, kvm or tcg/],
    ['machine', { machine: 'pc,accel=kvm' }, /invalid --machine/],
    ['bridge too long', { nic: ['bridge=abcdefghijklmnop'] }, /invalid bridge name/],
    ['nic key', { nic: ['bridge=br0,model=e1000'] }, /unknown key 'model'/],
    ['nic filter value', { nic: ['bridge=br0,filter=yes'] }, /filter is on or off/],
    ['nic multicast mac', { nic: ['bridge=br0,mac=43:00:00:00:00:01'] }, /multicast/],
    ['same mac twice', { nic: ['mac=42:00:00:00:00:09', 'mac=42:00:00:00:00:09'] }, /more than one --nic/],
    ['nine nics', { nic: Array(9).fill('br0') }, /at most 8/],
    ['network 0', { nic: ['network=0'] }, /invalid network id '0': expected a whole number from 1 to 16777215/],
    ['network too big', { nic: ['network=16777216'] }, /invalid network id '16777216'/],
    ['network not a number', { nic: ['network=0x2a'] }, /invalid network id '0x2a'/],
    ['network and bridge', { nic: ['network=42,bridge=br0'] }, /give one of bridge= or network=, once/],
    ['bridge twice', { nic: ['br0,bridge=br1'] }, /give one of bridge= or network=, once/],
    ['initrd without kernel', { initrd: '/x' }, /--initrd needs --kernel/],
    ['append with newline', { kernel: '/k', append: 'a\nb' }, /control characters/],
  ])('refuses %s', (_label, opts, re) => {
    expect(() => planVm(opts, host, defaults, fixedUuid)).toThrow(re);
  });
});

describe('sizes and counts (parsed in vm-resources.ts) reach the plan', () => {
  it('--memory 2G is 2048 MiB in the plan', () => {
    expect(planVm({ memory: '2G' }, host, defaults, fixedUuid).memoryMiB).toBe(2048);
  });

  it('more cores than the host has: allowed, with a warning', () => {
    const plan = planVm({ cores: '6' }, host, defaults, fixedUuid);
    expect(plan.cores).toBe(6);
    expect(plan.warnings).toEqual(["warning: --cores 6 is more than this host's 4 CPUs; the guest's vCPUs will share them"]);
    expect(planVm({ cores: '4' }, host, defaults, fixedUuid).warnings).toEqual([]);
  });

  it('--cpu host under kvm, max and named models with features anywhere', () => {
    expect(planVm({ cpu: 'host' }, { ...host, kvmUsable: true }, defaults, fixedUuid).cpu).toBe('host');
    expect(planVm({ cpu: 'max', accel: 'tcg' }, host, defaults, fixedUuid).cpu).toBe('max');
    expect(planVm({ cpu: 'Skylake-Client-v4,-hle,+pcid,kvm=off' }, host, defaults, fixedUuid).cpu).toBe('Skylake-Client-v4,-hle,+pcid,kvm=off');
  });

  it('--vnc and --cloud-init reach the spec as run-dir files', () => {
    const plan = planVm({ name: 'web1', vnc: true, cloudInit: 'on' }, host, defaults, fixedUuid);
    const spec = specFor({ ...plan, disks: [] }, ['42:00:00:00:00:01'], vmRunFiles('/run/u', 'web1'), vmLogFiles('/var/lib/u', 'web1'));
    expect(spec.vncSocket).toBe('/run/u/web1/vnc.sock');
    expect(spec.seed).toBe('/run/u/web1/seed.iso');
    const bare = specFor(planVm({ name: 'web1' }, host, defaults, fixedUuid), ['42:00:00:00:00:01'], vmRunFiles('/run/u', 'web1'), vmLogFiles('/var/lib/u', 'web1'));
    expect(bare.vncSocket).toBeUndefined();
    expect(bare.seed).toBeUndefined();
  });

  it('a disk whose format is not resolved never reaches a spec', () => {
    const plan = planVm({ disk: ['/d/a.img'] }, host, defaults, fixedUuid);
    expect(() => specFor(plan, ['42:00:00:00:00:01'], vmRunFiles('/run/u', 'x'), vmLogFiles('/var/lib/u', 'x'))).toThrow(/format of disk \/d\/a\.img was not resolved/);
  });
});
