/**
 * Verbs interrupted or refused half-way leave nothing behind and the VM in a state its next event ends
 * properly: a killed reboot, a signal during a start's claim, a refused start, a damaged record, two consoles
 * at once. The built CLI with a fake qemu that serves QMP (set-action, SHUTDOWN/RESET events, a console socket).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { vmLogFiles } from '../../src/core/vm-files.js';
import { withQmp } from '../../src/qemu/qmp.js';
import { BIN, waitFor } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';
import { checkInvariants, liveQemus } from '../helpers/invariants.js';

const fake = fakeQemuEnvironment({ env: { FAKE_QEMU_QMP: '1', FAKE_QEMU_SLEEP: '600' } });
const { run, start, leases } = fake;
const invariants = async () => checkInvariants({ runDir: fake.sb.runDir, leases: await leases() });
const qemuStatus = (name: string) =>
  withQmp(join(fake.sb.runDir, name, 'qmp.sock'), async (q) => ((await q.execute('query-status')) as { status: string }).status);

/** A reboot whose guest powers off only after `FAKE_QEMU_POWERDOWN_MS`, running until the test signals it. */
async function rebootThenSignal(name: string, sig: NodeJS.Signals) {
  let pid = 0;
  const p = run(['reboot', name], {}, (c) => (pid = c.pid!));
  // It has marked the VM as being rebooted (and told qemu to keep a powered-off guest): now interrupt it.
  await waitFor('reboot under way', () => pid !== 0 && existsSync(join(fake.sb.runDir, name, 'reboot.json')));
  process.kill(pid, sig);
  const r = await p;
  // The guest powers off (the reboot may have died before it pressed the button): as a guest does by itself.
  await withQmp(join(fake.sb.runDir, name, 'qmp.sock'), (q) => q.execute('system_powerdown'));
  return r;
}

describe('an interrupted reboot leaves a VM that ends on its guest power-off', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('%s: one line, qemu actions put back; the power-off then ends the VM and gc frees its MAC', async (sig) => {
    expect((await start(['--name', 'rb', '--detach'], { FAKE_QEMU_POWERDOWN_MS: '2500' })).code).toBe(0);
    const r = await rebootThenSignal('rb', sig);
    expect(r.code, r.stderr).toBe(sig === 'SIGTERM' ? 143 : 130);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(new RegExp(`^uncloud-vm: ${sig}: reboot of VM rb given up`));
    // The button was pressed: the guest powers off, and qemu (told "poweroff" again) ends.
    await waitFor('qemu gone after the power-off', () => liveQemus(fake.sb.runDir).length === 0);
    await run(['gc']);
    expect(await leases()).toEqual([]);
    expect((await invariants()).violations).toEqual([]);
  });

  it('SIGKILL, then the guest powers off: gc finds qemu kept paused, ends the VM and frees its MAC', async () => {
    expect((await start(['--name', 'rb', '--detach'], { FAKE_QEMU_POWERDOWN_MS: '1000' })).code).toBe(0);
    await rebootThenSignal('rb', 'SIGKILL');
    await waitFor('guest powered off, qemu kept', async () => (await qemuStatus('rb')) === 'shutdown');
    const gc = await run(['gc']);
    expect(gc.stdout).toMatch(/ended VM rb: its guest had powered off, but an interrupted reboot had kept qemu paused/);
    expect(gc.stdout).toMatch(/freed 42:00:00:00:00:01 \(VM rb nic0\)/);
    expect(liveQemus(fake.sb.runDir)).toEqual([]);
    expect(await leases()).toEqual([]);
    expect((await invariants()).violations).toEqual([]);
  });

  it('SIGKILL, then the guest powers off: status ends the VM too and says so', async () => {
    expect((await start(['--name', 'rb', '--detach'], { FAKE_QEMU_POWERDOWN_MS: '1000' })).code).toBe(0);
    await rebootThenSignal('rb', 'SIGKILL');
    await waitFor('guest powered off, qemu kept', async () => (await qemuStatus('rb')) === 'shutdown');
    const s = await run(['status', 'rb']);
    expect(s.stderr).toMatch(/VM rb: its guest had powered off, but an interrupted reboot had kept qemu paused/);
    expect(s.stdout).toMatch(/state\s+stopped/);
    expect(liveQemus(fake.sb.runDir)).toEqual([]);
    expect(await leases()).toEqual([]);
  });

  it('SIGKILL before the guest powered off: gc puts the action back, and the later power-off ends the VM', async () => {
    expect((await start(['--name', 'rb', '--detach'], { FAKE_QEMU_POWERDOWN_MS: '3000' })).code).toBe(0);
    await rebootThenSignal('rb', 'SIGKILL');
    const gc = await run(['gc']);
    // (On a loaded machine the power-off may come first: then gc ends the VM at once, as the test above.)
    expect(gc.stdout).toMatch(/put back VM rb's power-off and reboot actions|ended VM rb/);
    expect(existsSync(join(fake.sb.runDir, 'rb', 'reboot.json'))).toBe(false);
    await waitFor('qemu gone after the power-off', () => liveQemus(fake.sb.runDir).length === 0);
    await run(['gc']);
    expect(await leases()).toEqual([]);
  });

  it('an uninterrupted reboot power-cycles the VM in the same qemu and leaves no mark', async () => {
    expect((await start(['--name', 'rb', '--detach'])).code).toBe(0);
    const pid = liveQemus(fake.sb.runDir)[0]!.pid;
    const r = await run(['reboot', 'rb']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/VM rb powered off after [0-9.]+ s and is booting again/);
    expect(await qemuStatus('rb')).toBe('running');
    expect(liveQemus(fake.sb.runDir).map((q) => q.pid)).toEqual([pid]);
    expect(existsSync(join(fake.sb.runDir, 'rb', 'reboot.json'))).toBe(false);
  });
});

describe('a start refused or interrupted before qemu runs changes nothing', () => {
  it('a start refused for a held MAC writes no logs: logs and forget know nothing of it', async () => {
    expect((await start(['--name', 'm1', '--detach'])).code).toBe(0);
    const mac = (await leases())[0]!.mac;
    const r = await start(['--name', 'n0', '--detach', '--nic', `bridge=br0,mac=${mac}`]);
    expect(r.code).toBe(1);
    // One line: the refusal (the accel note and the rest only once a start proceeds).
    expect(r.stderr.trim().split('\n'), r.stderr).toEqual([`uncloud-vm: MAC ${mac} is used by VM m1, running on this host; pick another`]);
    expect(existsSync(vmLogFiles(fake.sb.stateDir, 'n0').dir)).toBe(false);
    expect((await run(['logs', 'n0'])).code).toBe(1);
    expect((await run(['forget', 'n0'])).stderr).toMatch(/no VM named n0 is known/);
  });

  it('a start that proceeds says which accel auto chose as a note', async () => {
    const r = await run(['start', '--memory', '64', '--name', 'a1', '--detach']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^uncloud-vm: note: accel auto: using (kvm|tcg)/m);
  });

  it.each(['SIGTERM', 'SIGINT'] as const)('%s while start --detach waits for qemu to answer: one line, qemu ended, nothing left behind', async (sig) => {
    let pid = 0;
    // qemu runs but never answers on QMP: the launcher would wait 30 s for it.
    const p = start(['--name', 'det1', '--detach'], { FAKE_QEMU_QMP: '' }, (c) => (pid = c.pid!));
    await waitFor('qemu running, the launcher waiting for it', () => liveQemus(fake.sb.runDir).length === 1);
    process.kill(pid, sig);
    const r = await p;
    expect(r.code, r.stderr).toBe(sig === 'SIGTERM' ? 143 : 130);
    expect(r.stderr.trim().split('\n').at(-1)).toBe(`uncloud-vm: ${sig}: VM det1 was not started; what it took is given back`);
    expect(liveQemus(fake.sb.runDir)).toEqual([]);
    expect(existsSync(join(fake.sb.runDir, 'det1'))).toBe(false);
    expect(await leases()).toEqual([]);
    expect((await run(['list'])).stdout).not.toMatch(/det1/);
    expect((await invariants()).violations).toEqual([]);
  });

  it.each(['SIGTERM', 'SIGINT'] as const)('%s while a foreground start takes its MACs: one line, nothing left behind', async (sig) => {
    // The store is made before the test holds its lock.
    const mac = (await run(['mac', 'allocate'])).stdout.trim();
    expect((await run(['mac', 'release', mac])).code).toBe(0);
    // The pool's lock held by "another start": the launcher, past its claim (its run dir is there), waits for
    // it inside prepare when it is signalled.
    const lock = join(fake.sb.stateDir, 'pool.lock');
    mkdirSync(lock);
    let pid = 0;
    const p = start(['--name', 'term1'], {}, (c) => (pid = c.pid!));
    await waitFor('the start claimed its run dir', () => existsSync(join(fake.sb.runDir, 'term1', 'vm.json')));
    process.kill(pid, sig);
    rmSync(lock, { recursive: true });
    const r = await p;
    expect(r.code).toBe(sig === 'SIGTERM' ? 143 : 130);
    expect(r.stderr.trim().split('\n')).toEqual([`uncloud-vm: ${sig}: VM term1 was not started; what it took is given back`]);
    expect(existsSync(join(fake.sb.runDir, 'term1'))).toBe(false);
    expect(existsSync(vmLogFiles(fake.sb.stateDir, 'term1').dir)).toBe(false);
    expect(liveQemus(fake.sb.runDir)).toEqual([]);
    expect(await leases()).toEqual([]);
    expect((await run(['gc'])).stderr).toMatch(/nothing to reclaim/);
  });
});

describe('a running VM with a damaged record', () => {
  it('pause, resume and reset find it through its pidfile and say the record is damaged', async () => {
    expect((await start(['--name', 'v3', '--detach'])).code).toBe(0);
    writeFileSync(join(fake.sb.runDir, 'v3', 'vm.json'), '{ damaged');
    const pause = await run(['pause', 'v3']);
    expect(pause.code, pause.stderr).toBe(0);
    expect(pause.stderr).toMatch(/note: VM v3: its record .*vm\.json is damaged/);
    expect(pause.stderr).toMatch(/VM v3 paused/);
    expect(await qemuStatus('v3')).toBe('paused');
    const resume = await run(['resume', 'v3']);
    expect(resume.code, resume.stderr).toBe(0);
    expect(await qemuStatus('v3')).toBe('running');
    const reset = await run(['reset', 'v3']);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stderr).toMatch(/VM v3 reset/);
  });
});

/** `console <vm>` with its stdin kept open (attached until the test ends it). */
function consoleProcess(name: string, extra: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [BIN, 'console', name], { env: { ...fake.sb.env, ...extra }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  return { child, done, stderr: () => stderr };
}

describe('one console at a time', () => {
  it('two consoles at once (qemu slow to say who is attached): exactly one attaches, the other is refused in one line', async () => {
    expect((await start(['--name', 'c1', '--detach'], { FAKE_QEMU_CHARDEV_DELAY_MS: '1500' })).code).toBe(0);
    for (let trial = 0; trial < 3; trial++) {
      const a = consoleProcess('c1');
      const b = consoleProcess('c1');
      const refused = await Promise.race([a.done.then(() => a), b.done.then(() => b)]);
      const attached = refused === a ? b : a;
      expect(await refused.done, refused.stderr()).toBe(1);
      expect(refused.stderr().trim().split('\n')).toEqual([expect.stringMatching(/^uncloud-vm: another console is attached to VM c1; only one at a time/)]);
      await waitFor('the other attached', () => attached.stderr().includes('connected to the serial console of VM c1'));
      attached.child.stdin.end();
      expect(await attached.done).toBe(0);
      expect(attached.stderr()).toMatch(/detached from VM c1/);
    }
  });
});
