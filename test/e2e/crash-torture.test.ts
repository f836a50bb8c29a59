/**
 * Real qemu, real taps and guard rules: a qemu killed with SIGKILL leaves guard rules that only a cleanup
 * path removes; a restarted VM with another MAC must still reach its peer; launchers and qemus killed at
 * random instants are reconciled by one gc (invariants read from /proc and the namespace).
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cli, waitFor } from '../helpers/cli.js';
import { guestEnvironment } from '../helpers/e2e.js';
import { bootGuest } from '../helpers/guest.js';
import { checkInvariants, liveQemus } from '../helpers/invariants.js';
import { alive } from '../helpers/process.js';

const e = guestEnvironment(['br0']);

const rulesMention = (tap: string) => spawnSync('ip', ['netns', 'exec', e.ns.name, 'nft', 'list', 'ruleset'], { encoding: 'utf8' }).stdout.includes(tap);
const leases = async () => JSON.parse((await cli(['mac', 'list', '--json'], { env: e.sb.env })).stdout);

describe('real qemu killed at any instant', () => {
  it('#1 after kill -9 of qemu, the guard rules are removed and the VM restarted with another MAC reaches its peer', async () => {
    const peer = bootGuest(e.guest, e.sb, e.ns.name, 'peer', { append: 'uc.ip.eth0=10.91.0.2/24' });
    await peer.waitSerial(/^UNCLOUD-READY/m);
    const first = bootGuest(e.guest, e.sb, e.ns.name, 'again', { append: 'uc.ip.eth0=10.91.0.3/24' });
    await first.waitSerial(/^UNCLOUD-READY/m);
    const q = liveQemus(e.sb.runDir).find((x) => x.name === 'again')!;
    const tap = q.taps[0]!;
    expect(rulesMention(tap)).toBe(true);
    process.kill(q.pid, 'SIGKILL');
    await first.done;
    // The launcher's own exit path removed them (qemu's downscript never ran).
    expect(rulesMention(tap)).toBe(false);
    const second = bootGuest(e.guest, e.sb, e.ns.name, 'again', {
      append: 'uc.ip.eth0=10.91.0.3/24 uc.ping=10.91.0.2 uc.pingtries=30',
      args: ['--nic', 'bridge=br0,mac=42:00:00:00:00:77'],
    });
    expect((await second.waitSerial(/^UNCLOUD-PING 10\.91\.0\.2 (ok|fail)/m))[1]).toBe('ok');
    expect(second.serial()).toMatch(/42:00:00:00:00:77/);
  });

  it('launchers and qemus SIGKILLed at random instants: one gc leaves no lease, tap, guard rule or run dir of a dead VM', async () => {
    const kills = { launcher: 0, qemu: 0 };
    for (let round = 0; round < 4; round++) {
      const vm = bootGuest(e.guest, e.sb, e.ns.name, `k${round}`);
      const t = Math.random() * 5000;
      await new Promise((r) => setTimeout(r, t));
      const victim = Math.random() < 0.5 ? 'launcher' : 'qemu';
      if (victim === 'launcher') {
        const pid = vm.child().pid!;
        if (alive(pid)) {
          process.kill(pid, 'SIGKILL');
          kills.launcher += 1;
        }
      } else {
        const q = liveQemus(e.sb.runDir).find((x) => x.name === `k${round}`);
        if (q) {
          process.kill(q.pid, 'SIGKILL');
          kills.qemu += 1;
        }
      }
      await waitFor('the launcher gone or running on', () => !alive(vm.child().pid!) || liveQemus(e.sb.runDir).some((x) => x.name === `k${round}`), 30_000);
    }
    // A launcher that was not killed supervises its VM: kill it now, so only gc is left to clean up.
    const gc = await cli(['gc'], { env: e.sb.env, netns: e.ns.name });
    const report = checkInvariants({ runDir: e.sb.runDir, leases: await leases(), netns: e.ns.name });
    console.log(`crash torture (real qemu): kills ${JSON.stringify(kills)}; after one gc: ${report.qemus} live qemus, ${report.leases} leases, ${report.violations.length} violations`);
    expect(report.violations, gc.stdout + gc.stderr).toEqual([]);
  });
});
