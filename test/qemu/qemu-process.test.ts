/**
 * The qemu process of a prepared VM (src/qemu/qemu-process.ts), with VMs prepared in a temp store and run dir
 * and a qemu that is a few lines of sh: exec.sh holds qemu at its gate until told "go" (a launcher that dies
 * first leaves it never run), how qemu ended comes back with its stderr (also in the VM's log), a launcher
 * that exits takes its qemu with it, qemu is recorded as the leases' owner before it may run, the identity
 * is remembered or put back, a spawn that fails gives back what the VM took, and the errors a failed start gives.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UncloudError } from '../../src/core/errors.js';
import type { PreparedVm } from '../../src/qemu/prepare-vm.js';
import { forgetFailedStart, notStarted, openGate, qemuSaid, recordQemu, rememberIdentity, spawnGated, spawnOrGiveBack } from '../../src/qemu/qemu-process.js';
import { currentOwner } from '../../src/system/proc.js';
import type { VmRecord } from '../../src/system/run-dir.js';
import { readFrom } from '../../src/system/vm-logs.js';
import { ROOT, waitFor } from '../helpers/cli.js';
import { launchFrame, me, refused } from '../helpers/launch.js';
import { alive, killAndWait } from '../helpers/process.js';
import { testUuid } from '../helpers/run-dir-vm.js';

const f = launchFrame('uncloud-vm-qemu-process-');
const started: ChildProcess[] = [];
const pids: number[] = [];
afterEach(async () => {
  for (const c of started.splice(0)) if (c.pid) await killAndWait(c.pid);
  for (const pid of pids.splice(0)) await killAndWait(pid);
});

const MAC1 = '42:00:00:00:00:01';
const recordOn = (vm: PreparedVm): VmRecord => JSON.parse(readFileSync(vm.files.record, 'utf8')) as VmRecord;
const storeWith = f.storeWith;
/** A process standing in for qemu (a pid that is alive). */
function standIn(): ChildProcess {
  const c = spawn('sleep', ['1000'], { stdio: 'ignore' });
  started.push(c);
  return c;
}
type Gate = NodeJS.WritableStream;
const gateOf = (c: ChildProcess): Gate => c.stdio[3] as unknown as Gate;

describe('spawnGated: exec.sh waits at its gate', () => {
  it("once told go, qemu runs: its exit code and stderr come back, the stderr passed on as it comes and appended to the VM's qemu log", async () => {
    const vm = await f.prepare(f.plan(f.shQemu('echo "qemu: -machine foo: unsupported machine type" >&2\nexit 3')));
    const chunks: string[] = [];
    const g = spawnGated(vm, (t) => chunks.push(t));
    openGate(gateOf(g.child));
    const end = await g.ended(1000);
    expect(end).toEqual({ exitCode: 3, stderr: 'qemu: -machine foo: unsupported machine type\n' });
    expect(chunks.join('')).toBe(end.stderr);
    expect(readFrom(vm.logs.qemu, vm.qemuLogStart)).toBe(end.stderr);
    expect(existsSync(f.qemuRan)).toBe(true);
  });

  it.each([
    { what: 'closed without a word (the launcher died)', end: (g: Gate) => g.end() },
    { what: 'told something else', end: (g: Gate) => g.end('stop\n') },
  ])('a gate $what: exec.sh ends with 75 and qemu never runs', async ({ end }) => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 0')));
    const g = spawnGated(vm, () => undefined);
    end(gateOf(g.child));
    expect(await g.ended(1000)).toEqual({ exitCode: 75, stderr: '' });
    expect(existsSync(f.qemuRan)).toBe(false);
  });

  it('qemu killed by a signal: the signal comes back', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exec sleep 1000')));
    const g = spawnGated(vm, () => undefined);
    openGate(gateOf(g.child));
    await waitFor('qemu running', () => existsSync(f.qemuRan));
    g.child.kill('SIGKILL');
    expect(await g.ended(1000)).toEqual({ signal: 'SIGKILL', stderr: '' });
  });

  it("qemu's exit ends it even while something qemu started holds its stderr open", async () => {
    const holder = join(f.dir, 'holder.pid');
    const vm = await f.prepare(f.plan(f.shQemu(`sleep 1000 &\necho $! > '${holder}'\necho bye >&2\nexit 4`)));
    const g = spawnGated(vm, () => undefined);
    openGate(gateOf(g.child));
    const end = await g.ended(100);
    pids.push(Number(readFileSync(holder, 'utf8')));
    expect(end.exitCode).toBe(4);
    expect(end.stderr).toBe('bye\n');
  });
});

/** A launcher of its own (the built module in a node of its own) that spawns the VM's qemu at its gate. */
function launcher(vm: PreparedVm, then: 'wait' | 'open-and-exit'): Promise<{ launcher: ChildProcess; qemuPid: number }> {
  const source = `
    import { existsSync } from 'node:fs';
    import { openGate, spawnGated } from ${JSON.stringify(join(ROOT, 'dist/qemu/qemu-process.js'))};
    const [vm, then, ran] = JSON.parse(process.argv[1]);
    const g = spawnGated(vm, () => undefined);
    process.stdout.write(g.child.pid + '\\n');
    if (then === 'open-and-exit') {
      openGate(g.child.stdio[3]);
      while (!existsSync(ran)) await new Promise((r) => setTimeout(r, 20));
      process.exit(0);
    }
    setInterval(() => undefined, 1000);
  `;
  const { NODE_EXTRA_CA_CERTS: _ca, ...env } = process.env;
  const child = spawn(process.execPath, ['--input-type=module', '-e', source, JSON.stringify([vm, then, f.qemuRan])], { stdio: ['ignore', 'pipe', 'inherit'], env });
  started.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve({ launcher: child, qemuPid: Number(out.trim()) });
    });
    child.once('exit', (code) => reject(new Error(`launcher ended (${code}) before it spawned qemu`)));
  });
}

describe('the launcher dies', () => {
  it('SIGKILLed while qemu waits at its gate: exec.sh ends and qemu never runs', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exec sleep 1000')));
    const { launcher: l, qemuPid } = await launcher(vm, 'wait');
    pids.push(qemuPid);
    expect(alive(qemuPid)).toBe(true);
    l.kill('SIGKILL');
    await waitFor('exec.sh gone', () => !alive(qemuPid));
    expect(existsSync(f.qemuRan)).toBe(false);
  });

  it('exits while its qemu runs: qemu is killed with it', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exec sleep 1000')));
    const { launcher: l, qemuPid } = await launcher(vm, 'open-and-exit');
    pids.push(qemuPid);
    await new Promise((r) => (l.exitCode !== null ? r(null) : l.once('exit', r)));
    expect(existsSync(f.qemuRan)).toBe(true);
    await waitFor('qemu gone', () => !alive(qemuPid));
  });
});

describe('recordQemu: qemu owns the leases before it may run', () => {
  it('a live qemu: owners are the launcher and qemu, and the record names qemu', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 0')));
    const q = standIn();
    const owner = await recordQemu(vm, f.deps, q.pid);
    expect(owner).toEqual(currentOwner(q.pid!));
    expect((await f.store.get(MAC1))?.owners).toEqual([me, owner]);
    expect(recordOn(vm).qemu).toEqual(owner);
    expect(vm.record.qemu).toEqual(owner);
  });

  it('a record with no launcher (a unit): qemu alone', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 0')), { managedBy: 'unit' });
    vm.record = { ...vm.record, launcher: null };
    const q = standIn();
    const owner = await recordQemu(vm, f.deps, q.pid);
    expect((await f.store.get(MAC1))?.owners).toEqual([owner]);
  });

  it.each([
    { what: 'no pid (never spawned)', pid: () => undefined },
    { what: 'a pid that is gone', pid: () => 999_999_999 },
  ])('$what: QEMU_FAILED, the leases and record untouched', async ({ pid }) => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 0')));
    const err = (await recordQemu(vm, f.deps, pid()).catch((e: unknown) => e)) as UncloudError;
    expect(err.code).toBe('QEMU_FAILED');
    expect(err.message).toBe('qemu could not be started: its process ended at once');
    expect((await f.store.get(MAC1))?.owners).toEqual([me]);
    expect(recordOn(vm).qemu).toBeNull();
  });

  it('a store that refuses the owners: the error, and the record does not name qemu', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 0')));
    const q = standIn();
    await expect(recordQemu(vm, { ...f.deps, store: storeWith({ setOwners: refused }) }, q.pid)).rejects.toThrow('disk full');
    expect(recordOn(vm).qemu).toBeNull();
  });
});

describe('the identity of a named VM', () => {
  const named = async (previous: boolean) => {
    const uuid = testUuid();
    const before = { version: 1 as const, name: 'web1', uuid, macs: ['42:00:00:00:00:05'], updated: new Date(0).toISOString() };
    if (previous) await f.store.putIdentity(before);
    return { vm: await f.prepare(f.plan(f.shQemu('exit 0'), { name: 'web1', uuid })), before };
  };

  it('remembered once qemu runs: its UUID and MACs', async () => {
    const { vm } = await named(false);
    await rememberIdentity(vm, f.deps);
    expect(await f.store.getIdentity('web1')).toMatchObject({ name: 'web1', uuid: vm.spec.uuid, macs: [vm.leases[0]!.mac] });
  });

  it('a failed start of a new name: forgotten', async () => {
    const { vm } = await named(false);
    await rememberIdentity(vm, f.deps);
    await forgetFailedStart(vm, f.deps);
    expect(await f.store.getIdentity('web1')).toBeNull();
  });

  it('a failed start of a name known before: what it was is put back', async () => {
    const { vm, before } = await named(true);
    await rememberIdentity(vm, f.deps);
    expect((await f.store.getIdentity('web1'))?.macs).toEqual([vm.leases[0]!.mac]);
    await forgetFailedStart(vm, f.deps);
    expect(await f.store.getIdentity('web1')).toEqual(before);
  });

  it('an unnamed VM: nothing remembered, nothing forgotten', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 0')));
    const calls: string[] = [];
    const store = storeWith({ putIdentity: async () => void calls.push('put'), deleteIdentity: async () => (calls.push('delete'), true) });
    await rememberIdentity(vm, { ...f.deps, store });
    await forgetFailedStart(vm, { ...f.deps, store });
    expect(calls).toEqual([]);
  });

  it('a store that will not remember: a note, and the VM runs on; one that will not forget: no error', async () => {
    const { vm } = await named(false);
    const store = storeWith({ putIdentity: refused, deleteIdentity: refused });
    await rememberIdentity(vm, { ...f.deps, store });
    expect(f.notes).toEqual(['VM web1: could not remember its UUID and MACs: disk full']);
    await expect(forgetFailedStart(vm, { ...f.deps, store })).resolves.toBeUndefined();
  });
});

describe('spawnOrGiveBack', () => {
  it('a spawn that throws: what the VM took is given back, and the error stands', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 0')));
    await expect(
      spawnOrGiveBack(vm, f.deps, () => {
        throw new Error('spawn EAGAIN');
      }),
    ).rejects.toThrow('spawn EAGAIN');
    expect(await f.held()).toEqual([]);
    expect(f.runDirs()).toEqual([]);
  });

  it('a store that will not take the leases back: the spawn error stands, the refusal is said, the run dir stays', async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 0')));
    await expect(spawnOrGiveBack(vm, { ...f.deps, store: storeWith({ release: refused }) }, () => Promise.reject(new Error('execa will not load')))).rejects.toThrow('execa will not load');
    expect(f.notes).toHaveLength(1);
    expect(f.notes[0]).toMatch(/^VM uncloud-\S+ was not started, and the store did not take back 42:00:00:00:00:01 \(disk full\)/);
    expect(await f.held()).toHaveLength(1);
    expect(f.runDirs()).toEqual([vm.spec.name]);
  });

  it("an execa subprocess (a thenable) comes back boxed while it runs, not awaited to its end", async () => {
    const vm = await f.prepare(f.plan(f.shQemu('exit 0')));
    const { execa } = await import('execa');
    const child = execa('sleep', ['1000'], { reject: false });
    pids.push(child.pid!);
    const r = await spawnOrGiveBack(vm, f.deps, async () => ({ child }));
    expect(r.child).toBe(child);
    expect(alive(child.pid!)).toBe(true);
    expect(await f.held()).toHaveLength(1);
  });
});

describe('what a failed start says', () => {
  it.each([
    { result: { code: 'ENOENT' }, code: 'QEMU_NOT_FOUND', msg: "qemu binary 'qemu-x' not found; install qemu-system-x86 or pass --qemu <path>" },
    { result: { code: 'EACCES', shortMessage: 'Command failed with EACCES', message: 'long' }, code: 'QEMU_FAILED', msg: 'qemu could not be started: Command failed with EACCES' },
    { result: { message: 'spawn failed' }, code: 'QEMU_FAILED', msg: 'qemu could not be started: spawn failed' },
  ])('notStarted($result) → $code', ({ result, code, msg }) => {
    const err = notStarted('qemu-x', result);
    expect([err.code, err.message, err.exitCode]).toEqual([code, msg, 1]);
  });

  const lines = (n: number): string => Array.from({ length: n }, (_, i) => `line ${i + 1}`).join('\n');
  it.each([
    { what: 'nothing', text: '', said: '' },
    { what: 'blank lines', text: '\n  \n', said: '' },
    { what: 'not text', text: undefined, said: '' },
    { what: 'one line', text: 'qemu: bad option\n', said: '; qemu said:\n  qemu: bad option' },
    { what: '40 lines', text: `${lines(40)}\n`, said: `; qemu said:\n${lines(40).replace(/^/gm, '  ')}` },
    { what: '41 lines: the last 40 after an ellipsis', text: lines(41), said: `; qemu said:\n  …\n${lines(41).split('\n').slice(1).join('\n').replace(/^/gm, '  ')}` },
  ])('qemuSaid: $what', ({ text, said }) => {
    expect(qemuSaid(text)).toBe(said);
  });

  it('openGate on no gate (a qemu with no fd 3) does nothing', () => {
    expect(() => openGate(null)).not.toThrow();
  });
});
