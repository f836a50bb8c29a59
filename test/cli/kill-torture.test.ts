/**
 * Kills at random instants, every verb raced against itself and gc, with a fake qemu that serves QMP: after
 * the dust settles, one gc must bring the state to the truth (test/helpers/invariants.ts). The counts of kills
 * per phase are printed, so a run shows what it exercised.
 */
import { type ChildProcess } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cli, waitFor } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';
import { checkInvariants, liveQemus } from '../helpers/invariants.js';
import { alive } from '../helpers/process.js';

const fake = fakeQemuEnvironment({ env: { FAKE_QEMU_QMP: '1', FAKE_QEMU_SLEEP: '600', FAKE_QEMU_POWERDOWN_MS: '50' } });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

describe('random kills', () => {
  it('launcher, qemu, gc, stop and mac release killed at random instants: one gc restores every invariant', async () => {
    const kills: Record<string, number> = { launcher: 0, qemu: 0, gc: 0, stop: 0, release: 0 };
    const running: { child: ChildProcess; what: string }[] = [];
    const spawnCli = (what: string, args: string[]) =>
      new Promise<ChildProcess>((resolve) => {
        void fake.run(args, {}, (c) => resolve(c)).catch(() => undefined);
      }).then((child) => {
        running.push({ child, what });
        return child;
      });
    const killLater = (child: ChildProcess, what: string, maxMs: number) =>
      void sleep(Math.random() * maxMs).then(() => {
        if (child.pid && alive(child.pid)) {
          process.kill(child.pid, 'SIGKILL');
          kills[what] = (kills[what] ?? 0) + 1;
        }
      });
    const names = ['t0', 't1', 't2', 't3', 't4', 't5', 't6'];
    // Keepers: VMs that run throughout; forced releases and gc runs race against their leases.
    for (const k of ['k0', 'k1', 'k2']) {
      const r = await fake.run(['start', '--name', k, '--accel', 'tcg', '--memory', '64', '--detach']);
      expect(r.code, r.stderr).toBe(0);
    }
    for (let i = 0; i < 50; i++) {
      const action = pick(['start', 'start', 'qemu', 'gc', 'stop', 'release']);
      if (action === 'start') {
        const c = await spawnCli('launcher', ['start', '--name', pick(names), '--accel', 'tcg', '--memory', '64', ...(Math.random() < 0.5 ? ['--detach'] : [])]);
        // Most are killed at some instant of their life; some live on (a foreground launcher until the settle).
        if (Math.random() < 0.75) killLater(c, 'launcher', 2500);
      } else if (action === 'qemu') {
        // The keepers' qemus live on: their leases are what the forced releases and gc runs race against.
        const q = liveQemus(fake.sb.runDir).filter((x) => !x.name.startsWith('k'));
        if (q.length > 0) {
          process.kill(pick(q).pid, 'SIGKILL');
          kills.qemu! += 1;
        }
      } else if (action === 'gc') {
        killLater(await spawnCli('gc', ['gc']), 'gc', 300);
      } else if (action === 'stop') {
        killLater(await spawnCli('stop', ['stop', pick(names), '--timeout', '2']), 'stop', 1500);
      } else {
        const q = liveQemus(fake.sb.runDir);
        const mac = q.length > 0 ? pick(pick(q).macs) : '42:00:00:00:00:01';
        killLater(await spawnCli('release', ['mac', 'release', mac, ...(Math.random() < 0.5 ? ['--force'] : [])]), 'release', 200);
      }
      await sleep(Math.random() * 300);
    }
    // Settle: whatever still runs of ours is killed too (a foreground launcher never ends by itself here).
    for (const r of running) {
      if (r.child.pid && alive(r.child.pid)) {
        process.kill(r.child.pid, 'SIGKILL');
        kills[r.what === 'launcher' ? 'launcher' : r.what] = (kills[r.what] ?? 0) + 1;
      }
    }
    await waitFor('every CLI process gone', () => running.every((r) => !r.child.pid || !alive(r.child.pid)), 30_000);
    const gc = await fake.run(['gc']);
    const leases = JSON.parse((await cli(['mac', 'list', '--json'], { env: fake.sb.env })).stdout);
    const report = checkInvariants({ runDir: fake.sb.runDir, leases });
    console.log(`kill torture (fake qemu): kills ${JSON.stringify(kills)}; after one gc: ${report.qemus} live qemus, ${report.leases} leases, ${report.violations.length} violations`);
    expect(report.violations, gc.stdout + gc.stderr).toEqual([]);
    expect(report.qemus, 'some VMs outlived their launchers: their leases were checked').toBeGreaterThan(0);
    // A second gc finds nothing more to do: the state is the truth.
    const again = await fake.run(['gc']);
    expect(again.stdout).toBe('');
  });
});
