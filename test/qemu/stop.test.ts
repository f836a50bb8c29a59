/**
 * stopVm against a scripted QMP socket and a stand-in qemu process (sleep): the power button, then quit, then
 * SIGKILL, and an outcome that says what really happened.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Owner } from '../../src/core/owner.js';
import { type StopResult, stopOutcomeText, stopVm } from '../../src/qemu/stop.js';
import { currentOwner } from '../../src/system/proc.js';
import { type FakeQmp, fakeQmp, type FakeQmpOptions } from '../helpers/fake-qmp.js';
import { alive, killAndWait } from '../helpers/process.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest('uncloud-vm-stop-');
const started: ChildProcess[] = [];
let server: FakeQmp | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const c of started.splice(0)) if (c.pid) await killAndWait(c.pid);
});

/** A stand-in qemu: `trap '' TERM` makes it one that ignores SIGTERM. */
function fakeQemu(ignoreTerm = false): { child: ChildProcess; owner: Owner } {
  const child = spawn('sh', ['-c', ignoreTerm ? "trap '' TERM; while :; do sleep 1; done" : 'exec sleep 1000'], { stdio: 'ignore' });
  started.push(child);
  return { child, owner: currentOwner(child.pid!)! };
}

const kill = (c: ChildProcess): void => {
  c.kill('SIGKILL');
};

async function stop(opts: FakeQmpOptions & { force?: boolean; timeoutMs?: number; noSocket?: boolean; ignoreTerm?: boolean }, setup?: (q: FakeQmp, c: ChildProcess) => void) {
  const { child, owner } = fakeQemu(opts.ignoreTerm);
  const path = join(tmp.path, 'qmp.sock');
  if (!opts.noSocket) {
    server = await fakeQmp(path, opts);
    setup?.(server, child);
  }
  const progress: string[] = [];
  const r = await stopVm({ name: 'vm1', qmpSocket: path, qemu: owner }, { timeoutMs: opts.timeoutMs ?? 5000, force: opts.force ?? false, progress: (m) => progress.push(m), pressEveryMs: 100 });
  return { r, progress, child, names: server?.names() ?? [], gone: !alive(child.pid!) };
}

describe('stopVm', () => {
  it('not running: nothing is sent', async () => {
    server = await fakeQmp(join(tmp.path, 'qmp.sock'));
    const r = await stopVm({ name: 'vm1', qmpSocket: server.path, qemu: { pid: 1, startTime: 1 } }, { timeoutMs: 1000, force: false, progress: () => undefined, isAlive: () => false });
    expect(r.outcome).toBe('not-running');
    expect(server.names()).toEqual([]);
  });

  it('a guest that powers off on the button: powered-off, and the power-off action is set first', async () => {
    const { r, names, gone } = await stop({
      on: {
        system_powerdown: (_c, q) => {
          setTimeout(() => {
            q.emit('SHUTDOWN', { guest: true, reason: 'guest-shutdown' });
            for (const c of started) kill(c);
          }, 20);
          return { return: {} };
        },
      },
    });
    expect(r.outcome).toBe('powered-off');
    expect(r.reason).toBe('guest-shutdown');
    expect(names).toEqual(['set-action', 'query-status', 'system_powerdown']);
    expect(server!.log[0]!.arguments).toEqual({ shutdown: 'poweroff' });
    expect(gone).toBe(true);
  });

  it('a deaf guest: the button is pressed again, then quit after the timeout', async () => {
    const { r, names, progress, gone } = await stop({ timeoutMs: 400, on: { quit: (_c, q) => (setTimeout(() => started.forEach(kill), 10), q.emit('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' }), { return: {} }) } });
    expect(r.outcome).toBe('quit');
    expect(names.filter((n) => n === 'system_powerdown').length).toBeGreaterThan(1);
    expect(names.at(-1)).toBe('quit');
    expect(progress.some((m) => /still running after 0\.4 s; quitting qemu/.test(m))).toBe(true);
    expect(gone).toBe(true);
  });

  it('qemu ignores quit (and SIGTERM): killed', async () => {
    const { r, progress, gone } = await stop({ timeoutMs: 100, force: true, ignoreTerm: true });
    expect(r.outcome).toBe('killed');
    expect(progress.at(-1)).toMatch(/qemu did not quit; killing it/);
    expect(gone).toBe(true);
  });

  it('--force: no button, quit at once', async () => {
    const { r, names } = await stop({ force: true, on: { quit: () => (started.forEach(kill), { return: {} }) } });
    expect(r.outcome).toBe('quit');
    expect(names).toEqual(['quit']);
  });

  it('no QMP socket: SIGTERM asks qemu to quit', async () => {
    const { r, progress, gone } = await stop({ noSocket: true });
    expect(r.outcome).toBe('quit');
    expect(progress[0]).toMatch(/^VM vm1: QMP .*qmp\.sock: no such socket .*; asking qemu to quit with SIGTERM$/);
    expect(gone).toBe(true);
  });

  it('a paused VM is resumed before the button, so the guest hears it', async () => {
    const { r, names, progress } = await stop({
      status: 'paused',
      on: {
        system_powerdown: (_c, q) => {
          q.emit('SHUTDOWN', { guest: true, reason: 'guest-shutdown' });
          started.forEach(kill);
          return { return: {} };
        },
      },
    });
    expect(r.outcome).toBe('powered-off');
    expect(names).toEqual(['set-action', 'query-status', 'cont', 'system_powerdown']);
    expect(progress[0]).toMatch(/VM vm1 is paused; resuming it/);
  });

  it('a guest already powered off (kept paused by a reboot): powered-off without pressing', async () => {
    // qemu ends by itself a moment after it is told a power-off ends it.
    const { r, names } = await stop({ status: 'shutdown', on: { 'set-action': () => (setTimeout(() => started.forEach(kill), 20), { return: {} }) } });
    expect(r.outcome).toBe('powered-off');
    expect(names).toEqual(['set-action', 'query-status']);
  });

  it('qemu ended by someone else while waiting: ended, with the reason qemu gave', async () => {
    const { r } = await stop({
      on: {
        system_powerdown: (_c, q) => {
          setTimeout(() => {
            q.emit('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
            started.forEach(kill);
          }, 20);
          return { return: {} };
        },
      },
    });
    expect(r).toMatchObject({ outcome: 'ended', reason: 'host-qmp-quit' });
    expect(stopOutcomeText(r)).toBe('ended without powering off (another QMP client quit qemu)');
  });

  it('QMP hangs up in the middle of the button\'s reply while qemu runs on: SIGTERM, not a failed stop', async () => {
    const { r, progress, gone } = await stop({ on: { system_powerdown: () => 'hangup' } });
    expect(r.outcome).toBe('quit');
    expect(progress.some((m) => /connection closed; asking qemu to quit with SIGTERM/.test(m))).toBe(true);
    expect(gone).toBe(true);
  });

  it('QMP silent at the button (a hung qemu): after the reply timeout, SIGTERM', async () => {
    const { r, progress, gone } = await stop({ on: { system_powerdown: () => 'silent' } });
    expect(r.outcome).toBe('quit');
    expect(progress.some((m) => /no reply to system_powerdown within \d+ ms; asking qemu to quit with SIGTERM/.test(m))).toBe(true);
    expect(gone).toBe(true);
  });

  it('QMP hangs up as qemu dies at the button: ended, not a failed stop', async () => {
    const { r } = await stop({
      on: {
        system_powerdown: (_c, q) => {
          void Promise.all(started.map((c) => killAndWait(c.pid!))).then(() => q.hangup());
          return 'silent';
        },
      },
    });
    expect(r.outcome).toBe('ended');
  });
});

describe('stopOutcomeText', () => {
  const ms = 1000;
  it.each<[StopResult, string]>([
    [{ outcome: 'not-running', ms }, 'was not running'],
    [{ outcome: 'powered-off', ms }, 'powered off'],
    [{ outcome: 'quit', ms }, 'quit'],
    [{ outcome: 'killed', ms }, 'was killed'],
    [{ outcome: 'ended', ms, reason: 'guest-panic' }, 'ended without powering off (the guest panicked)'],
    [{ outcome: 'ended', ms, reason: 'host-signal' }, 'ended without powering off (qemu got a signal)'],
    [{ outcome: 'ended', ms, reason: 'guest-reset' }, 'ended without powering off (the guest rebooted and qemu runs with -no-reboot)'],
    [{ outcome: 'ended', ms, reason: 'something-new' }, 'ended without powering off (something-new)'],
    [{ outcome: 'ended', ms }, 'ended without powering off (qemu went away)'],
  ])('%j → %s', (r, text) => {
    expect(stopOutcomeText(r)).toBe(text);
  });
});
