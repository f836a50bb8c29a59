/**
 * superviseVm (the foreground start) with VMs prepared in a temp store and run dir, and a stand-in qemu: the
 * fake qemu (test/fixtures/fake-qemu, QMP and the power button) or a few lines of sh with a scripted QMP
 * socket (test/helpers/fake-qmp.ts) once it runs. Whatever way qemu ends — cleanly, failing to start, failing
 * later, killed, never past its gate — its leases are given back and its run dir removed; the exit code is
 * qemu's; a stop signal at each stage (while prepared, at the gate, while qemu runs, twice) ends it in order;
 * a store that refuses a give-back is this run's error (or said, when it already has one), and the run dir
 * stays for gc. Signals are real ones, sent to this process while superviseVm handles them.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UncloudError } from '../../src/core/errors.js';
import type { HeldSignals } from '../../src/qemu/held-signals.js';
import type { VmPlan } from '../../src/core/vm-plan.js';
import type { LaunchDeps, PreparedVm, PrepareOptions } from '../../src/qemu/prepare-vm.js';
import { superviseVm } from '../../src/qemu/supervise-vm.js';
import type { FileStore } from '../../src/store/file-store.js';
import { readFrom } from '../../src/system/vm-logs.js';
import { ROOT, waitFor } from '../helpers/cli.js';
import { HOST, launchFrame, NOTHING_LEFT, refused } from '../helpers/launch.js';
import { createNetns, type Netns } from '../helpers/netns.js';
import { alive } from '../helpers/process.js';
import { testUuid } from '../helpers/run-dir-vm.js';

const f = launchFrame('uncloud-vm-supervise-');
/** Prepared as the foreground start prepares: qemu spawned at its gate once claimed, named by the leases from their creation. */
const prepare = (plan: VmPlan, opts: Partial<PrepareOptions> = {}): Promise<PreparedVm> => f.prepare(plan, { gate: true, ...opts });

const MAC1 = '42:00:00:00:00:01';
const storeWith = f.storeWith;

/** How superviseVm ended: its exit code, or its error. */
type Outcome = { code: number } | { err: UncloudError | NodeJS.ErrnoException };
function supervise(vm: PreparedVm, deps: Partial<LaunchDeps> = {}, held?: HeldSignals): Promise<Outcome> {
  return superviseVm(vm, { ...f.deps, ...deps }, held).then(
    (code) => ({ code }),
    (err: UncloudError) => ({ err }),
  );
}
const failed = (o: Outcome): UncloudError => {
  if (!('err' in o)) throw new Error(`expected a failure, got exit ${o.code}`);
  return o.err as UncloudError;
};

const left = f.left;
const nothingLeft = NOTHING_LEFT;

/** The fake qemu's pid once it is up (its -pidfile). */
const qemuPid = (vm: PreparedVm): number => Number(readFileSync(vm.files.pidfile, 'utf8'));

/** A signal to this process, once it has been handled. */
async function signal(sig: NodeJS.Signals): Promise<void> {
  const handled = new Promise((r) => process.once(sig, r));
  process.kill(process.pid, sig);
  await handled;
}

/** The fake qemu with QMP, running until told otherwise; `up` once superviseVm has seen its QMP answer. */
async function upVm(opts: { name?: string; powerdownMs?: number } = {}) {
  const plan = f.plan(f.fakeQemu({ sleep: 1000, stderr: 'qemu: up', ...(opts.powerdownMs !== undefined ? { powerdownMs: opts.powerdownMs } : {}) }), opts.name ? { name: opts.name, uuid: testUuid() } : {});
  return prepare(plan);
}
const untilUp = () => waitFor('qemu up (its stderr shown)', () => f.shown.length > 0);

/** A store through which `sig` comes while the VM is remembered, qemu recorded as the leases' owner, before the gate opens. */
const signalAtGate = (sig: NodeJS.Signals): FileStore =>
  storeWith({
    putIdentity: async (identity) => {
      await signal(sig);
      return f.store.putIdentity(identity);
    },
  });

describe('superviseVm: how qemu ended', () => {
  it('qemu ends cleanly: exit 0, its stderr shown once it was up, the identity remembered, its lease and run dir given back', async () => {
    const vm = await upVm({ name: 'web1' });
    const run = supervise(vm);
    await untilUp();
    expect((await f.store.getIdentity('web1'))?.macs).toEqual([MAC1]);
    expect(await f.ownerPids(MAC1)).toEqual([process.pid, qemuPid(vm)]);
    process.kill(qemuPid(vm), 'SIGTERM'); // the fake qemu ends with 0 on SIGTERM, as qemu does
    expect(await run).toEqual({ code: 0 });
    expect(f.shown).toEqual(['qemu: up\n']);
    expect(await left()).toEqual(nothingLeft);
    expect((await f.store.getIdentity('web1'))?.macs).toEqual([MAC1]);
  });

  it("qemu fails to start: its exit code, its whole stderr in the error (not shown besides), a new name forgotten, the log kept", async () => {
    const vm = await prepare(f.plan(f.shQemu('echo "qemu: -machine foo: unsupported machine type" >&2\necho "qemu: see -machine help" >&2\nexit 1'), { name: 'web1', uuid: testUuid() }));
    const err = failed(await supervise(vm));
    expect([err.code, err.exitCode]).toEqual(['QEMU_FAILED', 1]);
    expect(err.message).toBe('qemu failed to start (exit code 1); qemu said:\n  qemu: -machine foo: unsupported machine type\n  qemu: see -machine help');
    expect(f.shown).toEqual([]);
    expect(await left()).toEqual(nothingLeft);
    expect(await f.store.getIdentity('web1')).toBeNull();
    expect(readFrom(vm.logs.qemu, vm.qemuLogStart)).toContain('unsupported machine type');
  });

  it('qemu fails to start for a name known before: it is remembered as before', async () => {
    const { vm, before } = await f.knownVm(f.shQemu('exit 1'), { gate: true });
    failed(await supervise(vm));
    expect(await f.store.getIdentity('web1')).toEqual(before);
  });

  it('qemu fails once it was up: "exited with code N", its exit code, the identity kept, everything given back', async () => {
    const end = join(f.dir, 'end');
    const vm = await prepare(f.plan(f.shQemu(`echo "qemu: warning: up" >&2\nwhile [ ! -e '${end}' ]; do sleep 0.05; done\nexit 3`), { name: 'web1', uuid: testUuid() }));
    const run = supervise(vm);
    await waitFor('qemu running', () => existsSync(f.qemuRan));
    await f.serveQmp(vm);
    await untilUp();
    writeFileSync(end, '');
    const err = failed(await run);
    expect([err.code, err.exitCode, err.message]).toEqual(['QEMU_FAILED', 3, 'qemu exited with code 3']);
    expect(f.shown).toEqual(['qemu: warning: up\n']);
    expect(await left()).toEqual(nothingLeft);
    expect((await f.store.getIdentity('web1'))?.macs).toEqual([MAC1]);
  });

  it.each([
    { sig: 'SIGKILL' as const, exit: 137 },
    { sig: 'SIGTERM' as const, exit: 143 },
  ])('qemu killed from outside by $sig: QEMU_KILLED, exit $exit, everything given back', async ({ sig, exit }) => {
    const vm = await prepare(f.plan(f.shQemu('exec sleep 1000')));
    const run = supervise(vm);
    await waitFor('qemu running', () => existsSync(f.qemuRan));
    const pid = (await f.ownerPids(MAC1))!.at(-1)!;
    process.kill(pid, sig);
    const err = failed(await run);
    expect([err.code, err.exitCode, err.message]).toEqual(['QEMU_KILLED', exit, `qemu was killed by ${sig}`]);
    expect(await left()).toEqual(nothingLeft);
  });

  it('the qemu binary is gone by the time exec.sh runs it: QEMU_FAILED with the shell\'s exit code and words', async () => {
    const vm = await prepare(f.plan(f.shQemu('exit 0')));
    rmSync(vm.argv[0]!);
    const err = failed(await supervise(vm));
    expect([err.code, err.exitCode]).toEqual(['QEMU_FAILED', 127]);
    expect(err.message).toMatch(/^qemu failed to start \(exit code 127\); qemu said:\n .*not found/);
    expect(await left()).toEqual({ ...nothingLeft, qemuRan: false });
  });
});

describe('superviseVm: failures before qemu runs give back what the VM took', () => {
  it("its log cannot be opened: QEMU_FAILED naming it, qemu never runs, the lease and run dir given back", async () => {
    const vm = await prepare(f.plan(f.shQemu('exit 0')));
    rmSync(vm.logs.dir, { recursive: true });
    const err = failed(await supervise(vm));
    expect([err.code, err.message]).toEqual(['QEMU_FAILED', `qemu could not be started: cannot open its log: ENOENT: no such file or directory, open '${vm.logs.qemu}'`]);
    expect(await left()).toEqual({ ...nothingLeft, qemuRan: false });
  });

  it('prepared without its gate, the store refuses qemu as the owner: qemu is killed at its gate and never runs, nothing is remembered, everything given back', async () => {
    const vm = await prepare(f.plan(f.shQemu('exit 0'), { name: 'web1', uuid: testUuid() }), { gate: false });
    const err = failed(await supervise(vm, { store: storeWith({ setOwners: refused }) }));
    expect(err.message).toBe('disk full');
    expect(await left()).toEqual({ ...nothingLeft, qemuRan: false });
    expect(await f.store.getIdentity('web1')).toBeNull();
  });
});

describe('superviseVm: a stop signal at each stage', () => {
  it('one held while the VM was prepared: qemu is never started, exit 0, everything given back, nothing remembered', async () => {
    const vm = await prepare(f.plan(f.shQemu('exit 0'), { name: 'web1', uuid: testUuid() }));
    let released = 0;
    const held: HeldSignals = { signal: 'SIGHUP', release: () => void released++ };
    expect(await supervise(vm, {}, held)).toEqual({ code: 0 });
    expect(released).toBe(1);
    expect(f.notes).toEqual(['SIGHUP: stopping VM web1 before qemu started']);
    expect(await left()).toEqual({ ...nothingLeft, qemuRan: false });
    expect(await f.store.getIdentity('web1')).toBeNull();
  });

  it.each(['SIGTERM', 'SIGINT', 'SIGHUP'] as const)('%s while qemu waits at its gate: qemu never runs, exit 0, everything given back, nothing remembered', async (sig) => {
    const vm = await prepare(f.plan(f.shQemu('exit 0'), { name: 'web1', uuid: testUuid() }));
    expect(await supervise(vm, { store: signalAtGate(sig) })).toEqual({ code: 0 });
    expect(f.notes).toEqual([`${sig}: stopping VM web1 before qemu started`]);
    expect(await left()).toEqual({ ...nothingLeft, qemuRan: false });
    expect(await f.store.getIdentity('web1')).toBeNull();
  });

  it('one that came while qemu was spawned (still held): qemu never runs, exit 0, everything given back', async () => {
    const vm = await prepare(f.plan(f.shQemu('exit 0'), { name: 'web1', uuid: testUuid() }));
    // Not there when supervision begins (the first look); there at any later look, as if it came meanwhile.
    let looks = 0;
    const held: HeldSignals = {
      get signal() {
        return looks++ > 0 ? 'SIGINT' : undefined;
      },
      release: () => undefined,
    };
    expect(await supervise(vm, {}, held)).toEqual({ code: 0 });
    expect(f.notes).toEqual(['SIGINT: stopping VM web1 before qemu started']);
    expect(await left()).toEqual({ ...nothingLeft, qemuRan: false });
    expect(await f.store.getIdentity('web1')).toBeNull();
  });

  it('a signal at the gate of a name known before: it is remembered as before, not with the MACs of a start that never ran', async () => {
    const { vm, before } = await f.knownVm(f.shQemu('exit 0'), { gate: true });
    expect(await supervise(vm, { store: signalAtGate('SIGTERM') })).toEqual({ code: 0 });
    expect(await f.store.getIdentity('web1')).toEqual(before);
  });

  it.each(['SIGTERM', 'SIGINT', 'SIGHUP'] as const)('%s while qemu runs: the power button over QMP, the guest powers off, exit 0, everything given back', async (sig) => {
    const vm = await upVm({ name: 'web1' });
    const run = supervise(vm);
    await untilUp();
    await signal(sig);
    expect(await run).toEqual({ code: 0 });
    expect(f.notes[0]).toBe(`${sig}: stopping VM web1`);
    expect(await left()).toEqual(nothingLeft);
  });

  it('a second signal while a deaf guest is asked to power off: qemu is killed, exit 137, everything given back', async () => {
    const vm = await upVm({ name: 'web1', powerdownMs: 600_000 });
    const run = supervise(vm);
    await untilUp();
    const pid = qemuPid(vm);
    await signal('SIGTERM');
    await signal('SIGINT');
    const err = failed(await run);
    expect([err.code, err.exitCode]).toEqual(['QEMU_KILLED', 137]);
    expect(alive(pid)).toBe(false);
    expect(await left()).toEqual(nothingLeft);
  });

  it('its handlers are gone once it returned', async () => {
    const before = ['SIGTERM', 'SIGINT', 'SIGHUP'].map((s) => process.listenerCount(s));
    const vm = await prepare(f.plan(f.shQemu('exit 1')));
    failed(await supervise(vm));
    expect(['SIGTERM', 'SIGINT', 'SIGHUP'].map((s) => process.listenerCount(s))).toEqual(before);
  });
});

describe('superviseVm: a store that will not take a lease back (GIVE_BACK_FAILED)', () => {
  it('after a clean end: the run\'s error, exit 1; the lease stays held and the run dir stays for gc', async () => {
    const vm = await upVm();
    const run = supervise(vm, { store: storeWith({ release: refused }) });
    await untilUp();
    process.kill(qemuPid(vm), 'SIGTERM');
    const err = failed(await run);
    expect([err.code, err.exitCode]).toEqual(['GIVE_BACK_FAILED', 1]);
    expect(err.message).toMatch(new RegExp(`^VM ${vm.spec.name} has ended, but the store did not take back ${MAC1} \\(disk full\\); its run dir stays`));
    expect(await left()).toEqual({ held: [`${MAC1} ${vm.spec.name}`], runDirs: [vm.spec.name], qemuRan: true });
  });

  it("after a failed start: qemu's error stands, the refusal is said once, the run dir stays", async () => {
    const vm = await prepare(f.plan(f.shQemu('exit 2')));
    const err = failed(await supervise(vm, { store: storeWith({ release: refused }) }));
    expect([err.code, err.exitCode]).toEqual(['QEMU_FAILED', 2]);
    expect(f.notes).toHaveLength(1);
    expect(f.notes[0]).toMatch(/did not take back 42:00:00:00:00:01 \(disk full\)/);
    expect(await left()).toEqual({ held: [`${MAC1} ${vm.spec.name}`], runDirs: [vm.spec.name], qemuRan: true });
  });
});

describe('superviseVm in a network namespace: what qemu made on the host', () => {
  let ns: Netns;
  beforeAll(() => {
    ns = createNetns(['br0']);
  });
  afterAll(() => ns.remove());

  it("qemu SIGKILLed (its ifdown never runs): the launcher removes its tap and guard with its lease, exit 137", async () => {
    const pidFile = join(f.dir, 'qemu.pid');
    // Like qemu: make the tap named in -netdev and run its ifup script (the tap on br0, guarded), then run.
    const qemu = f.shQemu(
      [
        'for a in "$@"; do case "$a" in tap,*) netdev="$a";; esac; done',
        `tap=$(echo "$netdev" | sed 's/.*ifname=\\([^,]*\\),.*/\\1/')`,
        `ifup=$(echo "$netdev" | sed 's/.*,script=\\([^,]*\\),.*/\\1/')`,
        'ip tuntap add dev "$tap" mode tap && "$ifup" "$tap" || exit 1',
        `echo $$ > '${pidFile}'`,
        'exec sleep 1000',
      ].join('\n'),
    );
    // The launcher: the built modules in a node of its own in the namespace (taps and guards are per namespace).
    const source = `
      const m = (p) => import(${JSON.stringify(join(ROOT, 'dist'))} + '/' + p);
      const { planVm } = await m('core/vm-plan.js');
      const { parsePool } = await m('core/mac.js');
      const { prepareVm } = await m('qemu/prepare-vm.js');
      const { superviseVm } = await m('qemu/supervise-vm.js');
      const { FileStore } = await m('store/file-store.js');
      const { currentOwner } = await m('system/proc.js');
      const { bridgeExists } = await m('system/host.js');
      const [qemu, stateDir, runDir, host] = JSON.parse(process.argv[1]);
      const deps = { store: new FileStore({ dir: stateDir, host }), pool: parsePool('42:00:00'), runDir, stateDir, host, bridgeExists, note: () => undefined, qemuStderr: () => undefined };
      const uuid = '${testUuid()}';
      const plan = planVm({ accel: 'tcg', memory: '64', name: 'web1', uuid, qemu }, { totalMemoryMiB: 4096, cpus: 2, kvmUsable: false }, { bridge: 'br0', qemu }, { random: () => uuid, forName: () => uuid });
      const vm = await prepareVm(plan, deps, { launcher: currentOwner(process.pid), managedBy: 'launcher', gate: true });
      process.stdout.write(JSON.stringify({ tap: vm.spec.nics[0].tap }) + '\\n');
      const end = await superviseVm(vm, deps).then((code) => ({ code }), (e) => ({ code: e.code, exitCode: e.exitCode, message: e.message }));
      process.stdout.write(JSON.stringify(end) + '\\n');
      process.exit(0);
    `;
    const { NODE_EXTRA_CA_CERTS: _ca, ...env } = process.env;
    const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '--input-type=module', '-e', source, JSON.stringify([qemu, f.stateDir, f.runDir, HOST])], { stdio: ['ignore', 'pipe', 'inherit'], env });
    let out = '';
    child.stdout.on('data', (d: Buffer) => void (out += d.toString()));
    const ended = new Promise((r) => child.once('exit', r));
    await waitFor('qemu running, its tap up', () => existsSync(pidFile));
    const tap = (JSON.parse(out.split('\n')[0]!) as { tap: string }).tap;
    const nft = (): string => {
      try {
        return execFileSync('ip', ['netns', 'exec', ns.name, 'nft', 'list', 'table', 'bridge', 'uncloud_vm'], { encoding: 'utf8' });
      } catch {
        return ''; // no table: no guard at all
      }
    };
    expect(ns.ip('-o', 'link', 'show', 'dev', tap)).toContain('master br0');
    expect(nft()).toContain(tap);
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    await ended;
    expect(JSON.parse(out.trim().split('\n')[1]!)).toEqual({ code: 'QEMU_KILLED', exitCode: 137, message: 'qemu was killed by SIGKILL' });
    expect(ns.ip('-o', 'link', 'show')).not.toContain(tap);
    expect(nft()).not.toContain(tap);
    expect(await f.held()).toEqual([]);
    expect(f.runDirs()).toEqual([]);
  });
});
