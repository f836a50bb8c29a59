/** Process identity from /proc, on processes this test starts and ends. */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { currentOwner, isOwnerAlive, ownerLiveness, processCmdline, processStartTime } from '../../src/system/proc.js';
import { waitFor } from '../helpers/cli.js';

describe('proc', () => {
  it('a running process has a start time and its argv; once it ends it has neither', async () => {
    const child = spawn('sleep', ['600'], { stdio: 'ignore' });
    const pid = child.pid!;
    // Forked at once; its argv is sleep's once it has exec'd.
    await waitFor('sleep running', () => processCmdline(pid)?.[0] === 'sleep');
    const me = currentOwner(pid)!;
    expect(me.pid).toBe(pid);
    expect(me.startTime).toBe(processStartTime(pid));
    expect(isOwnerAlive(me)).toBe(true);
    expect(processCmdline(pid)).toEqual(['sleep', '600']);
    // A pid reused by another process has another start time.
    expect(isOwnerAlive({ pid, startTime: me.startTime + 1 })).toBe(false);
    child.kill('SIGKILL');
    await waitFor('the child gone', () => processStartTime(pid) === null);
    expect(currentOwner(pid)).toBeNull();
    expect(isOwnerAlive(me)).toBe(false);
  });

  it('ownerLiveness: right for each owner, a new process seen from the next batch on', async () => {
    const liveness = ownerLiveness();
    const first = spawn('sleep', ['600'], { stdio: 'ignore' });
    try {
      await waitFor('sleep running', () => processCmdline(first.pid!)?.[0] === 'sleep');
      const one = currentOwner(first.pid!)!;
      liveness.nextBatch();
      expect(liveness.alive(one)).toBe(true);
      expect(liveness.alive({ pid: one.pid, startTime: one.startTime + 1 })).toBe(false); // pid reused
      expect(liveness.alive({ pid: 4_000_001, startTime: 1 })).toBe(false); // past pid_max: never runs
      expect(liveness.alive(currentOwner(process.pid)!)).toBe(true);
      // Processes started after this batch's listing: unknown to it, seen from the next batch on.
      const later = [spawn('sleep', ['600'], { stdio: 'ignore' }), spawn('sleep', ['600'], { stdio: 'ignore' })];
      try {
        await waitFor('both running', () => later.every((c) => processCmdline(c.pid!)?.[0] === 'sleep'));
        const [two, three] = later.map((c) => currentOwner(c.pid!)!);
        expect(liveness.alive(two!)).toBe(false);
        liveness.nextBatch();
        expect(liveness.alive(three!)).toBe(true);
        expect(liveness.alive({ ...two! })).toBe(true);
        expect(liveness.alive({ pid: two!.pid, startTime: two!.startTime - 1 })).toBe(false); // its pid, another process's start
      } finally {
        for (const c of later) c.kill('SIGKILL');
      }
      // An owner that ends is gone for the next batch's new owners; its own answer was given already.
      first.kill('SIGKILL');
      await waitFor('the child gone', () => processStartTime(first.pid!) === null);
      liveness.nextBatch();
      expect(liveness.alive({ pid: one.pid, startTime: one.startTime + 2 })).toBe(false);
      expect(liveness.alive(one)).toBe(true); // one answer per running owner in a command: a VM's NICs agree
      expect(ownerLiveness().alive(one)).toBe(false);
    } finally {
      first.kill('SIGKILL');
    }
  });

  it.each([0, -1, 1.5, Number.NaN])('currentOwner(%s) is null', (pid) => {
    expect(currentOwner(pid)).toBeNull();
  });
});
