/**
 * runDetached (`start --detach`) with VMs prepared in a temp store and run dir, and a stand-in qemu (the fake
 * qemu with QMP, or a few lines of sh): it returns once qemu's QMP answers, with qemu owning the leases and
 * running on after the launcher is gone; a qemu that fails to start, is killed, or never answers is ended and
 * everything the VM took is given back, with qemu's words from this start's part of its log; a launcher
 * killed before the gate opens leaves a qemu that never runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LaunchDeps, PreparedVm } from '../../src/qemu/prepare-vm.js';
import { runDetached } from '../../src/qemu/run-detached.js';
import { readFrom } from '../../src/system/vm-logs.js';
import { ROOT, waitFor } from '../helpers/cli.js';
import { HOST, launchFrame, me, NOTHING_LEFT, refused, rejection } from '../helpers/launch.js';
import { alive } from '../helpers/process.js';
import { testUuid } from '../helpers/run-dir-vm.js';

const f = launchFrame('uncloud-vm-detached-');

const MAC1 = '42:00:00:00:00:01';
const storeWith = f.storeWith;
const detached = (vm: PreparedVm, deps: Partial<LaunchDeps> = {}, readyTimeoutMs?: number) => runDetached(vm, { ...f.deps, ...deps }, readyTimeoutMs);
const failure = rejection;
const left = f.left;
const nothingLeft = NOTHING_LEFT;
const namedPlan = (qemu: string) => f.plan(qemu, { name: 'web1', uuid: testUuid() });

describe('runDetached: qemu answers', () => {
  it('returns qemu, which owns the leases beside the launcher and runs on; the VM is remembered, its run dir stays', async () => {
    const vm = await f.prepare(namedPlan(f.fakeQemu({ sleep: 1000, stderr: 'qemu: detached and up' })));
    const qemu = await detached(vm);
    expect(qemu.pid).toBe(Number(readFileSync(vm.files.pidfile, 'utf8')));
    expect(alive(qemu.pid)).toBe(true);
    expect((await f.store.get(MAC1))?.owners).toEqual([me, qemu]);
    expect(JSON.parse(readFileSync(vm.files.record, 'utf8')).qemu).toEqual(qemu);
    expect((await f.store.getIdentity('web1'))?.macs).toEqual([MAC1]);
    expect(f.runDirs()).toEqual(['web1']);
    await waitFor("qemu's stderr in its log", () => readFileSync(vm.logs.qemu, 'utf8').includes('qemu: detached and up'));
  });
});

describe('runDetached: qemu does not answer, and everything is given back', () => {
  it('qemu fails to start: QEMU_FAILED (exit 1) with its exit code and this start\'s words only; a new name forgotten', async () => {
    // An earlier start's words, before this start's part of the log.
    mkdirSync(join(f.stateDir, 'logs', 'web1'), { recursive: true });
    appendFileSync(join(f.stateDir, 'logs', 'web1', 'qemu.log'), 'qemu: said by an earlier start\n');
    const vm = await f.prepare(namedPlan(f.shQemu('echo "qemu: -machine foo: unsupported machine type" >&2\nexit 3')));
    const err = await failure(detached(vm));
    expect([err.code, err.exitCode]).toEqual(['QEMU_FAILED', 1]);
    expect(err.message).toMatch(/^qemu failed to start \(exit code 3\); qemu said:\n/);
    expect(err.message).toContain('  qemu: -machine foo: unsupported machine type');
    expect(err.message).not.toContain('earlier start');
    expect(await left()).toEqual(nothingLeft);
    expect(await f.store.getIdentity('web1')).toBeNull();
  });

  it('qemu killed before it answered: the signal is named', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('kill -9 $$')));
    const err = await failure(detached(vm));
    expect([err.code, err.message]).toEqual(['QEMU_FAILED', 'qemu failed to start (SIGKILL)']);
    expect(await left()).toEqual(nothingLeft);
  });

  it('a known name whose qemu fails: remembered as before', async () => {
    const { vm, before } = await f.knownVm(f.shQemu('exit 1'));
    await failure(detached(vm));
    expect(await f.store.getIdentity('web1')).toEqual(before);
  });

  it('its QMP socket never answers: QEMU_TIMEOUT, qemu killed, nothing remembered', async () => {
    const vm = await f.prepare(namedPlan(f.fakeQemu({ sleep: 1000, qmp: false })));
    const err = await failure(detached(vm, {}, 300));
    expect([err.code, err.message]).toEqual(['QEMU_TIMEOUT', "qemu's QMP socket did not answer within 0.3 s"]);
    expect(f.leftovers()).toEqual([]);
    expect(await left()).toEqual(nothingLeft);
    expect(await f.store.getIdentity('web1')).toBeNull();
  });

  it('a stop signal while it waits for QMP: INTERRUPTED (128 + the signal), qemu killed, nothing remembered', async () => {
    const vm = await f.prepare(namedPlan(f.fakeQemu({ sleep: 1000, qmp: false })));
    let sig: NodeJS.Signals | undefined;
    setTimeout(() => (sig = 'SIGINT'), 300);
    const err = await failure(runDetached(vm, f.deps, 30_000, () => sig));
    expect([err.code, err.exitCode, err.message]).toEqual(['INTERRUPTED', 130, 'SIGINT: VM web1 was not started; what it took is given back']);
    expect(f.leftovers()).toEqual([]);
    expect(await left()).toEqual(nothingLeft);
    expect(await f.store.getIdentity('web1')).toBeNull();
  });

  it('the store refuses qemu as the owner: qemu killed at its gate, never runs', async () => {
    const vm = await f.prepare(namedPlan(f.fakeQemu({ sleep: 1000 })));
    const err = await failure(detached(vm, { store: storeWith({ setOwners: refused }) }));
    expect(err.message).toBe('disk full');
    expect(f.leftovers()).toEqual([]);
    expect(await left()).toEqual({ ...nothingLeft, qemuRan: false });
    expect(await f.store.getIdentity('web1')).toBeNull();
  });

  it('its log cannot be opened (gone): QEMU_FAILED naming it, qemu never runs, everything given back', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 0')));
    rmSync(vm.logs.dir, { recursive: true });
    const err = await failure(detached(vm));
    expect([err.code, err.message]).toEqual(['QEMU_FAILED', `qemu could not be started: cannot open its log: ENOENT: no such file or directory, open '${vm.logs.qemu}'`]);
    expect(await left()).toEqual({ ...nothingLeft, qemuRan: false });
  });

  it('the store will not take the leases back: the failure stands, the refusal is said once, the lease and run dir stay for gc', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 3')));
    const err = await failure(detached(vm, { store: storeWith({ release: refused }) }));
    expect(err.code).toBe('QEMU_FAILED');
    expect(f.notes).toHaveLength(1);
    expect(f.notes[0]).toMatch(/did not take back 42:00:00:00:00:01 \(disk full\); its run dir stays/);
    expect(await left()).toEqual({ held: [`${MAC1} ${vm.spec.name}`], runDirs: [vm.spec.name], qemuRan: true });
  });
});

/**
 * A launcher of its own (the built modules in a node of its own) that runs the prepared VM detached, then
 * exits; with `hang`, the store never answers when qemu is recorded (qemu waits at its gate) and it says so.
 */
function launcher(vm: PreparedVm, hang: boolean): { child: ChildProcess; said: Promise<string> } {
  const source = `
    import { FileStore } from ${JSON.stringify(join(ROOT, 'dist/store/file-store.js'))};
    import { runDetached } from ${JSON.stringify(join(ROOT, 'dist/qemu/run-detached.js'))};
    const [vm, stateDir, runDir, host, hang] = JSON.parse(process.argv[1]);
    const store = new FileStore({ dir: stateDir, host });
    if (hang) store.setOwners = () => (process.stdout.write('at the gate\\n'), new Promise(() => undefined));
    const qemu = await runDetached(vm, { store, host, runDir, stateDir, note: (m) => process.stderr.write(m + '\\n') });
    process.stdout.write(qemu.pid + '\\n');
    process.exit(0);
  `;
  const { NODE_EXTRA_CA_CERTS: _ca, ...env } = process.env;
  const child = spawn(process.execPath, ['--input-type=module', '-e', source, JSON.stringify([vm, f.stateDir, f.runDir, HOST, hang])], { stdio: ['ignore', 'pipe', 'inherit'], env });
  const said = new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.endsWith('\n')) resolve(out.trim());
    });
    child.once('exit', (code) => reject(new Error(`launcher ended (${code}) before it said anything`)));
  });
  return { child, said };
}

describe('runDetached: the launcher goes', () => {
  it('exits once qemu answers: qemu runs on, owning its lease', async () => {
    const vm = await f.prepare(f.plan(f.fakeQemu({ sleep: 1000 })));
    const { child, said } = launcher(vm, false);
    const pid = Number(await said);
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    expect(child.exitCode).toBe(0);
    expect(alive(pid)).toBe(true);
    expect(await f.ownerPids(MAC1)).toContain(pid);
  });

  it('exits once qemu answers: what qemu says afterwards still reaches its log, and qemu lives', async () => {
    const say = join(f.dir, 'say');
    const said = join(f.dir, 'said');
    // Like qemu, it ignores SIGPIPE: a stderr gone with the launcher would lose its words, not end it.
    const vm = await f.prepare(f.plan(f.shQemu(`trap '' PIPE\nwhile [ ! -e '${say}' ]; do sleep 0.05; done\necho "qemu: said after the launcher left" >&2\n: > '${said}'\nexec sleep 1000`)));
    const l = launcher(vm, false);
    await waitFor('qemu running', () => existsSync(f.qemuRan));
    await f.serveQmp(vm);
    const pid = Number(await l.said);
    await new Promise((r) => (l.child.exitCode !== null ? r(null) : l.child.once('exit', r)));
    writeFileSync(say, '');
    await waitFor('qemu has spoken', () => existsSync(said));
    expect(readFrom(vm.logs.qemu, vm.qemuLogStart)).toBe('qemu: said after the launcher left\n');
    expect(alive(pid)).toBe(true);
  });

  it('SIGKILLed while qemu waits at its gate: qemu never runs', async () => {
    const vm = await f.prepare(f.plan(f.fakeQemu({ sleep: 1000 })));
    const { child, said } = launcher(vm, true);
    expect(await said).toBe('at the gate');
    child.kill('SIGKILL');
    await waitFor('exec.sh gone', () => f.leftovers().length === 0);
    expect(existsSync(f.qemuRan)).toBe(false);
  });
});
