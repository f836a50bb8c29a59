/**
 * A unit carries its VM as `hook prepare` arguments: plan → start options → arguments → commander → plan
 * must give back exactly the plan, for every start option (the round trip where filter=off once got lost).
 */
import { Command } from 'commander';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { addStartOptions, startFlags } from '../../src/cli/commands/shared/start-options.js';
import { planToStartOptions, startOptionsToArgs } from '../../src/core/plan-arguments.js';
import { planVm, type StartOptions, type VmPlan } from '../../src/core/vm-plan.js';

const host = { totalMemoryMiB: 8192, cpus: 4, kvmUsable: false };
const defaults = { bridge: 'br0', qemu: 'qemu-system-x86_64' };
const uuids = { random: () => '11111111-2222-4333-8444-555555555555', forName: () => '66666666-7777-5888-9999-aaaaaaaaaaaa' };

/** What commander makes of the arguments a unit carries. */
function parseArgs(args: string[]): StartOptions {
  const cmd = addStartOptions(new Command('prepare').exitOverride());
  cmd.parse(args, { from: 'user' });
  return startFlags(cmd.opts());
}

const word = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,20}$/);
const path = fc.stringMatching(/^\/[A-Za-z0-9_./ -]{1,30}$/);
const nic = fc.record({
  where: fc.oneof(word.map((b) => `bridge=${b.slice(0, 15)}`), fc.integer({ min: 1, max: 16_777_215 }).map((n) => `network=${n}`)),
  mac: fc.option(fc.integer({ min: 1, max: 0xffffff }).map((n) => `mac=42:00:00:${n.toString(16).padStart(6, '0').match(/../g)!.join(':')}`), { nil: undefined }),
  filter: fc.constantFrom(undefined, 'filter=on', 'filter=off'),
  ip4: fc.option(fc.tuple(fc.integer({ min: 1, max: 223 }), fc.integer({ min: 0, max: 255 })).map(([a, b]) => `ip4=${a}.${b}.0.7`), { nil: undefined }),
  ip6: fc.option(fc.integer({ min: 1, max: 0xffff }).map((n) => `ip6=2001:db8:${n.toString(16)}::/64`), { nil: undefined }),
});
const options = fc.record(
  {
    memory: fc.integer({ min: 16, max: 4096 }).map(String),
    cores: fc.integer({ min: 1, max: 4 }).map(String),
    name: word,
    uuid: fc.constantFrom('0b0b0b0b-0000-4000-8000-000000000001', 'ABCDEF01-2345-4678-9abc-def012345678'),
    accel: fc.constantFrom('auto', 'tcg', 'kvm'),
    machine: fc.constantFrom('pc', 'q35', 'pc-i440fx-7.2'),
    cdrom: path,
    kernel: path,
    append: fc.string({ maxLength: 30 }).filter((s) => s !== '' && !/[\u0000-\u001f\u007f]/.test(s)),
    qemu: path,
    noReboot: fc.boolean(),
    cpu: fc.constantFrom('max', 'qemu64', 'Skylake-Client,-hle'),
    vnc: fc.boolean(),
    nic: fc.array(nic, { minLength: 1, maxLength: 3 }).map((ns) =>
      ns.map((n) => [n.where, n.mac, n.filter, n.ip4, n.ip6].filter((x): x is string => x !== undefined).join(',')),
    ),
  },
  // A unit's VM always has a name (`unit <name>`).
  { requiredKeys: ['memory', 'nic', 'name'] },
);

function plan(opts: StartOptions): VmPlan | null {
  try {
    return planVm(opts, host, defaults, uuids);
  } catch {
    return null; // an invalid combination (kvm without /dev/kvm, a MAC twice…): not a plan to carry
  }
}

describe('the plan survives its trip through a unit', () => {
  it('planVm(parse(args(planToStartOptions(plan)))) equals plan, for random start options', () => {
    let carried = 0;
    fc.assert(
      fc.property(options, (opts) => {
        const p = plan(opts as StartOptions);
        if (!p) return;
        carried += 1;
        const args = startOptionsToArgs(planToStartOptions(p));
        expect(planVm(parseArgs(args), host, defaults, uuids)).toEqual(p);
      }),
      { numRuns: 400 },
    );
    expect(carried).toBeGreaterThan(100);
  });

  it('filter=off and the guard options are in the arguments', () => {
    const p = planVm({ name: 'f1', nic: ['bridge=br1,filter=off', 'bridge=br0,ip4=10.0.0.7,ip6any=on'] }, host, defaults, uuids);
    const args = startOptionsToArgs(planToStartOptions(p));
    expect(args).toContain('bridge=br1,filter=off');
    expect(args.join(' ')).toMatch(/--nic bridge=br0,ip4=10\.0\.0\.7(\/32)?,ip6any=on/);
  });
});

describe('planToStartOptions', () => {
  it('carries disks, --cpu, --vnc and --cloud-init so that planVm rebuilds the same plan', () => {
    const opts = {
      name: 'web1',
      disk: ['/d/a,,b.img,format=raw,readonly=on,cache=none', 'new=/d/o.qcow2,size=20G,backing=/d/base.qcow2'],
      cpu: 'max,-hle',
      vnc: true,
      cloudInit: 'ssh-keys=/k/id.pub,user-data=/k/ud,,x.yaml,network=none',
    };
    const plan = planVm(opts, host, defaults, uuids);
    const again = planVm(planToStartOptions(plan), host, defaults, uuids);
    // The accelerator note depends on how accel was given (auto or resolved), nothing else may differ.
    expect({ ...again, accelNote: undefined }).toEqual({ ...plan, accelNote: undefined });
    expect(again.disks).toEqual([
      { path: '/d/a,b.img', format: 'raw', readonly: true, cache: 'none' },
      { path: '/d/o.qcow2', format: 'qcow2', readonly: false, create: { sizeBytes: 20 * 2 ** 30, backing: '/d/base.qcow2' } },
    ]);
    const args = startOptionsToArgs(planToStartOptions(plan));
    expect(args).toEqual(expect.arrayContaining(['--cpu', 'max,-hle', '--vnc', '--cloud-init', 'ssh-keys=/k/id.pub,user-data=/k/ud,,x.yaml,network=none']));
  });
});
