/** Process identity from /proc, on processes this test starts and ends. */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { currentOwner, isOwnerAlive, processCmdline, processStartTime } from '../../src/system/proc.js';
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

  it.each([0, -1, 1.5, Number.NaN])('currentOwner(%s) is null', (pid) => {
    expect(currentOwner(pid)).toBeNull();
  });
});
