/**
 * Two verbs on one VM at once, as an operator hits them without planning, through the built CLI with the fake
 * qemu (QMP served). Each race runs a few rounds with the second verb a random few ms behind the first; after
 * every round: the invariants of test/helpers/invariants.ts hold without a gc (each live qemu's MACs leased to
 * it, nothing held for a dead VM, no run dir, tap or guard rule of a gone VM), exactly one of two conflicting
 * verbs wins and the other fails with one line and a non-zero exit, and a gc then finds nothing.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CliResult, waitFor } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';
import { checkInvariants, liveQemus } from '../helpers/invariants.js';
import { writeRunDirVm } from '../helpers/run-dir-vm.js';
import { withRunDirLock } from '../../src/system/run-dir.js';
import { currentOwner } from '../../src/system/proc.js';

const fake = fakeQemuEnvironment({ env: { FAKE_QEMU_QMP: '1', FAKE_QEMU_SLEEP: '600', FAKE_QEMU_POWERDOWN_MS: '50' } });

/**
 * The guest takes 1.5 s to power off, so the first verb still acts when the second arrives (a few ms behind it,
 * plus however much longer its node takes to start on a busy machine): the two overlap, and only one may win.
 */
const SLOW_POWEROFF = { FAKE_QEMU_POWERDOWN_MS: '1500' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const after = <T>(ms: number, f: () => Promise<T>) => sleep(ms).then(f);
const rnd = (max: number) => Math.floor(Math.random() * max);
const errorLines = (r: CliResult) => r.stderr.trim().split('\n');

/** After a round: the invariants, with no gc run to mend anything; then a gc that finds nothing to do. */
async function settled(round: string): Promise<void> {
  const report = checkInvariants({ runDir: fake.sb.runDir, leases: await fake.leases(), netns: fake.ns.name });
  expect(report.violations, round).toEqual([]);
  const gc = await fake.run(['gc']);
  expect([gc.code, gc.stdout, gc.stderr], round).toEqual([0, '', 'uncloud-vm: gc: nothing to reclaim\n']);
}

/** Exactly one of two conflicting verbs won; the loser's whole stderr is one line, and it exited 1. */
function oneWinner(round: string, a: CliResult, b: CliResult): CliResult {
  const wins = [a, b].filter((r) => r.code === 0);
  expect(wins.length, `${round}: ${a.code} ${a.stderr} / ${b.code} ${b.stderr}`).toBe(1);
  const loser = a.code === 0 ? b : a;
  expect(loser.code, round).toBe(1);
  expect(errorLines(loser), round).toEqual([expect.stringMatching(/^uncloud-vm: VM x is (being (stopped|rebooted) by uncloud-vm \(pid \d+\)|not running)/)]);
  return wins[0]!;
}

describe('stop and reboot of one VM at once', () => {
  it('two stops: one stops the VM, the other is refused with one line (both said "powered off" before)', async () => {
    for (let i = 0; i < 4; i++) {
      expect((await fake.start(['--name', 'x', '--detach'], SLOW_POWEROFF)).code).toBe(0);
      const d = rnd(40);
      const round = `round ${i} (second stop ${d} ms later)`;
      const [a, b] = await Promise.all([fake.run(['stop', 'x']), after(d, () => fake.run(['stop', 'x']))]);
      expect(oneWinner(round, a, b).stderr, round).toMatch(/VM x powered off after/);
      expect(liveQemus(fake.sb.runDir), round).toEqual([]);
      await settled(round);
    }
  }, 60_000);

  it('stop and reboot: one wins; a stopped VM is never reported as booting again, a rebooted one keeps running', async () => {
    for (let i = 0; i < 5; i++) {
      if (liveQemus(fake.sb.runDir).length === 0) expect((await fake.start(['--name', 'x', '--detach'], SLOW_POWEROFF)).code).toBe(0);
      // Either one first, the other up to 60 ms behind.
      const d = rnd(120) - 60;
      const round = `round ${i} (reboot ${d} ms after stop)`;
      const [stop, reboot] = await Promise.all([after(Math.max(0, -d), () => fake.run(['stop', 'x'])), after(Math.max(0, d), () => fake.run(['reboot', 'x', '--timeout', '5']))]);
      const won = oneWinner(round, stop, reboot);
      const running = liveQemus(fake.sb.runDir).length;
      if (won === stop) expect([running, stop.stderr], round).toEqual([0, expect.stringMatching(/VM x powered off after/)]);
      else expect([running, reboot.stderr], round).toEqual([1, expect.stringMatching(/VM x powered off after [\d.]+ s and is booting again/)]);
      await settled(round);
    }
    await fake.run(['stop', 'x', '--force']);
  }, 90_000);
});

describe('forget and start of one name at once', () => {
  it('forget waits for the claim lock a start holds, then sees the VM starting and refuses: its identity and logs stay', async () => {
    expect((await fake.start(['--name', 'x', '--detach'])).code).toBe(0);
    expect((await fake.run(['stop', 'x', '--force'])).code).toBe(0);
    const identity = join(fake.sb.stateDir, 'vms', 'x.json');
    const before = readFileSync(identity, 'utf8');
    let forget: Promise<CliResult> | undefined;
    // A start of x, as its claim does it: under the run dir's claim lock, the run dir with a live launcher.
    await withRunDirLock(fake.sb.runDir, async () => {
      forget = fake.run(['forget', 'x']);
      // Without the lock, forget checked and forgot meanwhile: it ended. With it, it waits here.
      await Promise.race([forget, sleep(3000)]);
      writeRunDirVm(fake.sb.runDir, 'x', { launcher: currentOwner(process.pid)! });
    });
    const r = await forget!;
    expect([r.code, errorLines(r)]).toEqual([1, [`uncloud-vm: VM x is starting; stop it first ('uncloud-vm stop x'), then forget it`]]);
    expect(readFileSync(identity, 'utf8')).toBe(before);
    expect(existsSync(join(fake.sb.stateDir, 'logs', 'x', 'serial.log'))).toBe(true);
    rmSync(join(fake.sb.runDir, 'x'), { recursive: true });
  }, 30_000);
});

describe('two gcs at once', () => {
  it("a dead VM's MAC and run dir are reclaimed once: exactly one gc reports each, and a third finds nothing", async () => {
    for (let i = 0; i < 4; i++) {
      const round = `round ${i}`;
      expect((await fake.start(['--name', 'y', '--detach'])).code).toBe(0);
      const [q] = liveQemus(fake.sb.runDir);
      process.kill(q!.pid, 'SIGKILL');
      await waitFor('qemu gone', () => liveQemus(fake.sb.runDir).length === 0);
      const d = rnd(30);
      const [a, b] = await Promise.all([fake.run(['gc']), after(d, () => fake.run(['gc']))]);
      expect([a.code, b.code], round).toEqual([0, 0]);
      const out = a.stdout + b.stdout;
      expect(out.match(/^removed run dir y$/gm) ?? [], `${round}: ${a.stdout} / ${b.stdout}`).toHaveLength(1);
      expect(out.match(/^freed /gm) ?? [], `${round}: ${a.stdout} / ${b.stdout}`).toHaveLength(1);
      await settled(round);
    }
  }, 60_000);
});
