/**
 * prepareVm against a file store, run dir and state dir in a temp dir: what a start it lets through holds
 * (leases owned by the launcher, record, scripts, logs, the identity to remember), the MACs a VM gets back,
 * refusals that change nothing, and failures after the claim that give back everything taken — or, when the
 * store will not take a lease back, say so and leave the run dir for gc (the next start takes it over).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UncloudError } from '../../src/core/errors.js';
import { tapName } from '../../src/core/tap-name.js';
import type { VmPlan } from '../../src/core/vm-plan.js';
import type { LaunchDeps, PrepareOptions } from '../../src/qemu/prepare-vm.js';
import { cleanupVm } from '../../src/qemu/reconcile.js';
import { currentOwner } from '../../src/system/proc.js';
import type { VmRecord } from '../../src/system/run-dir.js';
import { ROOT, waitFor } from '../helpers/cli.js';
import { HOST, launchFrame, me, pool, readOrNull, rejection } from '../helpers/launch.js';
import { killAndWait } from '../helpers/process.js';
import { deadOwner, testUuid, writeRunDirVm } from '../helpers/run-dir-vm.js';
import { snapshot } from '../helpers/state.js';

const f = launchFrame('uncloud-vm-prepare-');
const started: ChildProcess[] = [];
afterEach(async () => {
  for (const c of started.splice(0)) if (c.pid) await killAndWait(c.pid);
});

const MAC = (n: number): string => `42:00:00:00:00:${n.toString(16).padStart(2, '0')}`;
const recordOn = (name: string): VmRecord => JSON.parse(readFileSync(join(f.runDir, name, 'vm.json'), 'utf8')) as VmRecord;
const failWith = rejection;
const storeWith = f.storeWith;
/** A lease held for another VM (or this one, by uuid) owned by a dead process, as a killed run leaves it. */
const holdFor = (mac: string, name: string, uuid = testUuid()) => f.store.allocate(pool, [{ vm: { uuid, name }, nic: 0, owners: [deadOwner], mac }]);

describe('prepareVm: a start it lets through', () => {
  it('an unnamed VM: its MAC leased to the launcher, the record names MAC and tap, scripts and logs written, nothing to remember', async () => {
    const plan = f.plan(f.fakeQemu());
    const vm = await f.prepare(plan);
    expect(await f.held()).toEqual([`${MAC(1)} ${plan.name}`]);
    expect(await f.ownerPids(MAC(1))).toEqual([process.pid]);
    expect(vm.leases.map((l) => l.mac)).toEqual([MAC(1)]);
    expect(vm.record).toMatchObject({ name: plan.name, uuid: plan.uuid, launcher: me, qemu: null, managedBy: 'launcher', taps: [tapName(plan.uuid, 0)] });
    expect(vm.record.nics.map((n) => [n.index, n.mac, n.tap, n.bridge])).toEqual([[0, MAC(1), tapName(plan.uuid, 0), 'br0']]);
    expect(recordOn(plan.name)).toEqual(vm.record);
    for (const script of [vm.files.execScript, vm.files.ifup(0), vm.files.ifdown(0)]) expect(statSync(script).mode & 0o777, script).toBe(0o700);
    expect(readFileSync(vm.files.execScript, 'utf8')).toContain(plan.qemu);
    expect(vm.argv[0]).toBe(plan.qemu);
    expect(vm.argv.join(' ')).toContain(`mac=${MAC(1)}`);
    // The log starts with this start's header; what qemu writes comes after qemuLogStart.
    expect(readFileSync(vm.logs.qemu, 'utf8')).toMatch(new RegExp(`^-- uncloud-vm: VM ${plan.name} \\(${plan.uuid}\\) starting at .* --\\n$`));
    expect(vm.qemuLogStart).toBe(statSync(vm.logs.qemu).size);
    expect(vm.identity).toBeNull();
    expect(vm.previousIdentity).toBeNull();
    expect(f.notes).toEqual([]);
  });

  it('two NICs: a MAC given with mac= is honoured, the other comes from the pool', async () => {
    const vm = await f.prepare(f.plan(f.fakeQemu(), { nic: [`bridge=br0,mac=${MAC(9)}`, 'bridge=br1'] }));
    expect(vm.leases.map((l) => [l.mac, l.nic])).toEqual([
      [MAC(9), 0],
      [MAC(1), 1],
    ]);
    expect(vm.record.nics.map((n) => n.bridge)).toEqual(['br0', 'br1']);
    expect(vm.record.bridges).toEqual(['br0', 'br1']);
  });

  it('a unit (managedBy unit): the leases are held with no owner until hook adopt names qemu', async () => {
    const vm = await f.prepare(f.plan(f.fakeQemu()), { managedBy: 'unit' });
    expect(await f.ownerPids(vm.leases[0]!.mac)).toEqual([]);
    expect(recordOn(vm.spec.name).managedBy).toBe('unit');
  });

  it("a detached VM's ifdown script gives its MAC back with the command it was given; a foreground VM's does not", async () => {
    const detached = await f.prepare(f.plan(f.fakeQemu(), { name: 'd1' }), { releaseOnDown: ['/usr/bin/uncloud-vm', 'hook', 'release', 'd1'] });
    expect(readFileSync(detached.files.ifdown(0), 'utf8')).toContain(`/usr/bin/uncloud-vm hook release d1 ${MAC(1)} >/dev/null 2>&1 || true`);
    const fg = await f.prepare(f.plan(f.fakeQemu(), { name: 'f1' }));
    expect(readFileSync(fg.files.ifdown(0), 'utf8')).not.toContain('hook release');
  });

  it('a named VM: what it is to be remembered as once qemu runs, and nothing remembered yet', async () => {
    const plan = f.plan(f.fakeQemu(), { name: 'web1', uuid: testUuid() });
    const vm = await f.prepare(plan);
    expect(vm.identity).toEqual({ version: 1, name: 'web1', uuid: plan.uuid, macs: [MAC(1)], updated: vm.record.started });
    expect(vm.previousIdentity).toBeNull();
    expect(await f.store.getIdentity('web1')).toBeNull();
  });

  it('a named VM that ran before gets its remembered MACs back, and its previous identity is kept to put back', async () => {
    const uuid = testUuid();
    const before = { version: 1 as const, name: 'web1', uuid, macs: [MAC(5), MAC(6)], updated: new Date(0).toISOString() };
    await f.store.putIdentity(before);
    const vm = await f.prepare(f.plan(f.fakeQemu(), { name: 'web1', uuid, nic: ['bridge=br0', 'bridge=br0'] }));
    expect(vm.leases.map((l) => l.mac)).toEqual([MAC(5), MAC(6)]);
    expect(vm.previousIdentity).toEqual(before);
    expect(f.notes).toEqual([]);
  });

  it('a remembered MAC another VM holds meanwhile: another one, and a note naming the holder', async () => {
    const uuid = testUuid();
    await f.store.putIdentity({ version: 1, name: 'web1', uuid, macs: [MAC(5)], updated: new Date(0).toISOString() });
    await holdFor(MAC(5), 'db1');
    const vm = await f.prepare(f.plan(f.fakeQemu(), { name: 'web1', uuid }));
    expect(vm.leases.map((l) => l.mac)).toEqual([MAC(1)]);
    expect(f.notes).toEqual([`VM web1: nic0's previous MAC ${MAC(5)} is held by VM db1; using ${MAC(1)}`]);
    expect(await f.held()).toEqual([`${MAC(1)} web1`, `${MAC(5)} db1`]);
  });

  it('a remembered MAC a VM running here uses (its lease lost): never handed out, the note names that VM', async () => {
    const uuid = testUuid();
    await f.store.putIdentity({ version: 1, name: 'web1', uuid, macs: [MAC(5)], updated: new Date(0).toISOString() });
    writeRunDirVm(f.runDir, 'm1', { nics: [{ index: 0, mac: MAC(5), tap: tapName(testUuid(), 0), bridge: 'br0' }] }, started);
    const vm = await f.prepare(f.plan(f.fakeQemu(), { name: 'web1', uuid }));
    expect(vm.leases.map((l) => l.mac)).toEqual([MAC(1)]);
    expect(f.notes).toEqual([`VM web1: nic0's previous MAC ${MAC(5)} is held by VM m1; using ${MAC(1)}`]);
  });

  it("a dead earlier run of the name (launcher killed before it remembered anything): its leases are given back and its MACs taken again", async () => {
    const uuid = testUuid();
    writeRunDirVm(f.runDir, 'web1', {
      uuid,
      nics: [0, 1].map((index) => ({ index, mac: MAC(7 + index), tap: tapName(uuid, index), bridge: 'br0' })),
      taps: [tapName(uuid, 0), tapName(uuid, 1)],
    });
    await f.store.allocate(pool, [0, 1].map((nic) => ({ vm: { uuid, name: 'web1' }, nic, owners: [deadOwner], mac: MAC(7 + nic) })));
    const vm = await f.prepare(f.plan(f.fakeQemu(), { name: 'web1', uuid }));
    // One NIC now: the first MAC again, the second given back.
    expect(vm.leases.map((l) => l.mac)).toEqual([MAC(7)]);
    expect(await f.held()).toEqual([`${MAC(7)} web1`]);
    expect(await f.ownerPids(MAC(7))).toEqual([process.pid]);
    expect(f.notes).toEqual([]);
  });

  it("the VM's own stale lease (a killed run, run dir gone) on its remembered MAC: taken back, no one blamed", async () => {
    const uuid = testUuid();
    await f.store.putIdentity({ version: 1, name: 'web1', uuid, macs: [MAC(5)], updated: new Date(0).toISOString() });
    await holdFor(MAC(5), 'web1', uuid);
    const vm = await f.prepare(f.plan(f.fakeQemu(), { name: 'web1', uuid }));
    expect(vm.leases.map((l) => l.mac)).toEqual([MAC(5)]);
    expect(await f.ownerPids(MAC(5))).toEqual([process.pid]);
    expect(f.notes).toEqual([]);
  });

  it("each start's part of qemu's log begins after its own header (an earlier start's lines are before it)", async () => {
    const plan = f.plan(f.fakeQemu(), { name: 'web1', uuid: testUuid() });
    const first = await f.prepare(plan);
    writeFileSync(first.logs.qemu, 'qemu: an earlier run said this\n', { flag: 'a' });
    const { giveBackVm } = await import('../../src/qemu/reconcile.js');
    await giveBackVm(f.store, HOST, first);
    const second = await f.prepare(plan);
    const text = readFileSync(second.logs.qemu, 'utf8');
    expect(text.slice(0, second.qemuLogStart)).toContain('an earlier run said this');
    expect(text.slice(0, second.qemuLogStart).match(/starting at/g)).toHaveLength(2);
    expect(text.slice(second.qemuLogStart)).toBe('');
  });
});

describe('prepareVm with its gate (the foreground start)', () => {
  it("qemu's shell is spawned at its gate once the VM is claimed: the lease names it beside the launcher from its creation, so does the record, and qemu has not run", async () => {
    const plan = f.plan(f.fakeQemu());
    let ownersAtCreation: number[] | undefined;
    const store = storeWith({
      allocate: async (p, requests) => {
        ownersAtCreation = requests[0]!.owners.map((o) => o.pid);
        return f.store.allocate(p, requests);
      },
      setOwners: () => Promise.reject(new Error('no second round in the store')),
    });
    const vm = await f.prepare(plan, { gate: true }, { store });
    const gatePid = vm.gate!.child.pid!;
    expect(ownersAtCreation).toEqual([process.pid, gatePid]);
    expect(await f.ownerPids(MAC(1))).toEqual([process.pid, gatePid]);
    expect(recordOn(plan.name).qemu).toEqual(currentOwner(gatePid));
    expect(vm.record.qemu).toEqual(currentOwner(gatePid));
    expect(existsSync(f.qemuRan)).toBe(false);
    expect(f.leftovers()).toEqual([gatePid]);
  });

  it('the launcher SIGKILLed once the VM is prepared: its gate ends, qemu never runs, and gc frees the lease, the VM counts as dead', async () => {
    const qemu = f.fakeQemu();
    const source = `
      const m = (p) => import(${JSON.stringify(join(ROOT, 'dist'))} + '/' + p);
      const { planVm } = await m('core/vm-plan.js');
      const { prepareVm } = await m('qemu/prepare-vm.js');
      const { FileStore } = await m('store/file-store.js');
      const { currentOwner } = await m('system/proc.js');
      const { parsePool } = await m('core/mac.js');
      const [qemu, stateDir, runDir, host] = JSON.parse(process.argv[1]);
      const deps = { store: new FileStore({ dir: stateDir, host }), pool: parsePool('42:00:00'), runDir, stateDir, host, bridgeExists: () => true, note: () => undefined };
      const plan = planVm({ accel: 'tcg', memory: '64', name: 'web1', qemu }, { totalMemoryMiB: 4096, cpus: 2, kvmUsable: false }, { bridge: 'br0', qemu }, { random: () => '${testUuid()}', forName: () => '${testUuid()}' });
      const vm = await prepareVm(plan, deps, { launcher: currentOwner(process.pid), managedBy: 'launcher', gate: true });
      process.stdout.write(vm.gate.child.pid + '\\n');
      setInterval(() => undefined, 1000);
    `;
    const { NODE_EXTRA_CA_CERTS: _ca, ...env } = process.env;
    const launcher = spawn(process.execPath, ['--input-type=module', '-e', source, JSON.stringify([qemu, f.stateDir, f.runDir, HOST])], { stdio: ['ignore', 'pipe', 'inherit'], env });
    started.push(launcher);
    let out = '';
    launcher.stdout.on('data', (d: Buffer) => void (out += d.toString()));
    const gatePid = Number(await waitFor('the VM prepared', () => out.includes('\n') && out.trim()));
    expect(await f.ownerPids(MAC(1))).toEqual([launcher.pid, gatePid]);
    await killAndWait(launcher.pid!);
    await waitFor('its gate ended', () => f.leftovers().length === 0);
    expect(existsSync(f.qemuRan)).toBe(false);
    // Both owners are gone: the store's gc frees the lease, and the VM counts as dead (its dir goes).
    expect((await f.store.gc()).map((l) => l.mac)).toEqual([MAC(1)]);
    expect(await cleanupVm(f.store, f.runDir, HOST, 'web1')).toEqual([]);
    expect(await f.held()).toEqual([]);
    expect(f.runDirs()).toEqual([]);
  });
});

describe('prepareVm: refusals before anything is taken change nothing', () => {
  it.each<{ what: string; code: string; exit?: number; msg: RegExp; plan?: (q: string) => VmPlan; deps?: Partial<LaunchDeps>; opts?: Partial<PrepareOptions>; busy?: boolean }>([
    { what: 'qemu binary not found', code: 'QEMU_NOT_FOUND', msg: /^qemu binary '\/nonexistent\/qemu' not found; install qemu-system-x86 or pass --qemu <path>$/, plan: () => f.plan('/nonexistent/qemu') },
    { what: 'a bridge that does not exist', code: 'NO_BRIDGE', msg: /^bridge br7 does not exist; create it/, plan: (q) => f.plan(q, { nic: ['bridge=br0', 'bridge=br7'] }), deps: { bridgeExists: (b) => b === 'br0' } },
    { what: 'a stop signal that came while it was prepared', code: 'INTERRUPTED', exit: 143, msg: /^SIGTERM: VM web1 was not started; what it took is given back$/, opts: { interrupted: () => 'SIGTERM' } },
    { what: 'a VM of that name already starting', code: 'VM_RUNNING', msg: /^VM web1 is already starting \(pid \d+\); stop it first or pick another --name$/, busy: true },
  ])('$what: $code, no lease, run dir, log or remembered identity appears', async ({ code, exit, msg, plan, deps, opts, busy }) => {
    if (busy) writeRunDirVm(f.runDir, 'web1', { launcher: me });
    const q = f.fakeQemu();
    const before = snapshot(f.dir);
    const err = await failWith(f.prepare(plan?.(q) ?? f.plan(q, { name: 'web1' }), opts, deps));
    expect(err.code).toBe(code);
    expect(err.message).toMatch(msg);
    if (exit !== undefined) expect(err.exitCode).toBe(exit);
    // Byte for byte: the store, the run dir (the lock file left out: a claim that ran made it), no logs.
    const after = snapshot(f.dir);
    for (const k of Object.keys(after)) if (k.includes('.claim')) delete after[k];
    for (const k of Object.keys(before)) if (k.includes('.claim')) delete before[k];
    expect(after).toEqual(before);
    expect(f.notes).toEqual([]);
  });
});

describe('prepareVm: a failure after the claim gives back everything it took', () => {
  const network = (ensureNetworks: (p: VmPlan) => void) => ({ ensureNetworks, bridgeExists: (b: string) => b === 'br0' });
  type Failure = { what: string; code: string; msg: RegExp; setup?: () => Promise<unknown> | unknown; nic?: string[]; deps?: () => Partial<LaunchDeps>; opts?: () => Partial<PrepareOptions>; held?: string[] };
  // Each failure also with qemu spawned at its gate once the VM is claimed (the foreground start): the gate is ended too.
  const withGate = (cases: Failure[]): (Failure & { gate: boolean })[] => cases.flatMap((c) => [{ ...c, gate: false }, { ...c, what: `${c.what} (qemu at its gate)`, gate: true }]);
  it.each<Failure & { gate: boolean }>(withGate([
    {
      what: 'making its network fails',
      code: 'NETWORK_FAILED',
      msg: /^cannot make network 5$/,
      nic: ['network=5'],
      deps: () =>
        network(() => {
          throw new UncloudError('NETWORK_FAILED', 'cannot make network 5');
        }),
    },
    { what: "its network's bridge is still missing once networks are made", code: 'NO_BRIDGE', msg: /^bridge ucbr5 does not exist/, nic: ['network=5'], deps: () => network(() => undefined) },
    {
      what: 'mac= names a MAC a VM running here uses',
      code: 'MAC_HELD',
      msg: /^MAC 42:00:00:00:00:05 is used by VM m1, running on this host; pick another$/,
      nic: ['bridge=br0', `bridge=br0,mac=${MAC(5)}`],
      setup: () => writeRunDirVm(f.runDir, 'm1', { nics: [{ index: 0, mac: MAC(5), tap: tapName(testUuid(), 0), bridge: 'br0' }] }, started),
    },
    {
      what: 'mac= names a MAC the store holds for another VM',
      code: 'MAC_HELD',
      msg: /^MAC 42:00:00:00:00:05 is already held by VM db1; pick another or release it first$/,
      nic: ['bridge=br0', `bridge=br0,mac=${MAC(5)}`],
      setup: () => holdFor(MAC(5), 'db1'),
      held: [`${MAC(5)} db1`],
    },
    {
      what: 'a stop signal that came once the MACs were leased',
      code: 'INTERRUPTED',
      msg: /^SIGINT: VM web1 was not started; what it took is given back$/,
      opts: () => {
        let asked = 0;
        return { interrupted: () => (++asked > 1 ? 'SIGINT' : undefined) };
      },
    },
    {
      what: "the logs cannot be opened (the state dir's logs is a file)",
      code: 'ENOTDIR',
      msg: /ENOTDIR|not a directory/,
      setup: () => {
        mkdirSync(f.stateDir, { recursive: true });
        writeFileSync(join(f.stateDir, 'logs'), 'not a directory');
      },
    },
    {
      what: 'the store refuses to set the owners of a unit\'s leases',
      code: 'WRITE_FAILED',
      msg: /^disk full$/,
      deps: () => ({ store: storeWith({ setOwners: () => Promise.reject(new UncloudError('WRITE_FAILED', 'disk full')) }) }),
      opts: () => ({ managedBy: 'unit' }),
    },
  ]))('$what: $code, its leases given back, its run dir removed', async ({ code, msg, setup, nic, deps, opts, held, gate }) => {
    await setup?.();
    const err = await f.prepare(f.plan(f.fakeQemu(), { name: 'web1', nic: nic ?? ['bridge=br0', 'bridge=br0'] }), { gate, ...opts?.() }, deps?.()).then(
      () => null,
      (e: unknown) => e as NodeJS.ErrnoException,
    );
    expect(err).not.toBeNull();
    expect((err as UncloudError).code).toBe(code);
    expect(err!.message).toMatch(msg);
    expect(await f.held()).toEqual(held ?? []);
    expect(f.runDirs().filter((d) => d !== 'm1')).toEqual([]);
    expect(readOrNull(join(f.stateDir, 'logs', 'web1', 'qemu.log'))).toBeNull();
    expect(await f.store.getIdentity('web1')).toBeNull();
    expect(f.notes).toEqual([]);
    // Nothing of this start runs on (a gate left waiting would end only with this process).
    await waitFor('no qemu left at its gate', () => f.leftovers().every((pid) => started.some((c) => c.pid === pid)));
    expect(existsSync(f.qemuRan)).toBe(false);
  });

  it('the store will not take a lease back: the first error stands, the refusal is said, the run dir stays, and the next start takes it over with the same MAC', async () => {
    const uuid = testUuid();
    const refusing = storeWith({ release: () => Promise.reject(new UncloudError('WRITE_FAILED', 'disk full')) });
    let asked = 0;
    const plan = f.plan(f.fakeQemu(), { name: 'web1', uuid });
    // A launcher of its own, which ends with its failed start (as the CLI's does).
    const launcher = spawn('sleep', ['1000'], { stdio: 'ignore' });
    started.push(launcher);
    const opts = { launcher: currentOwner(launcher.pid!)!, interrupted: () => (++asked > 1 ? ('SIGTERM' as const) : undefined) };
    const err = await failWith(f.prepare(plan, opts, { store: refusing }));
    expect(err.code).toBe('INTERRUPTED');
    expect(f.notes).toEqual([`VM web1 was not started, and the store did not take back ${MAC(1)} (disk full); its run dir stays, and 'uncloud-vm gc' gives it back once the store answers`]);
    expect(await f.held()).toEqual([`${MAC(1)} web1`]);
    expect(f.runDirs()).toEqual(['web1']);
    expect(recordOn('web1').nics.map((n) => n.mac)).toEqual([MAC(1)]);
    // The launcher ends and the store answers again: the next start of the name clears the dead run and gets
    // its MAC back.
    await killAndWait(launcher.pid!);
    f.notes.length = 0;
    const vm = await f.prepare(plan);
    expect(vm.leases.map((l) => l.mac)).toEqual([MAC(1)]);
    expect(await f.held()).toEqual([`${MAC(1)} web1`]);
    expect(await f.ownerPids(MAC(1))).toEqual([process.pid]);
  });

  it('ensureNetworks is called once the VM is claimed (its bridges recorded), and a network bridge it made is then accepted', async () => {
    const seen: string[][] = [];
    const made = new Set(['br0']);
    const vm = await f.prepare(f.plan(f.fakeQemu(), { name: 'web1', nic: ['network=5'] }), {}, {
      bridgeExists: (b) => made.has(b),
      ensureNetworks: (p) => {
        seen.push(recordOn(p.name).bridges ?? []);
        made.add('ucbr5');
      },
    });
    expect(seen).toEqual([['ucbr5']]);
    expect(vm.record.nics.map((n) => n.bridge)).toEqual(['ucbr5']);
  });
});
