/**
 * The power verbs against a scripted QMP socket: what each sends, what it returns, that qemu's power-off and
 * reboot actions are put back however a verb ends, and how an interrupted reboot is settled.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UncloudError } from '../../src/core/errors.js';
import { pauseVm, type PowerTarget, queryStatus, rebootVm, resetVm, resumeVm, settleAbandonedReboot } from '../../src/qemu/power.js';
import { currentOwner } from '../../src/system/proc.js';
import { type FakeQmp, fakeQmp, type FakeQmpOptions } from '../helpers/fake-qmp.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest('uncloud-vm-power-');
let server: FakeQmp | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function target(opts: FakeQmpOptions = {}, noReboot = true): Promise<PowerTarget> {
  server = await fakeQmp(join(tmp.path, 'qmp.sock'), opts);
  return { name: 'vm1', qmpSocket: server.path, noReboot, rebootMark: join(tmp.path, 'reboot') };
}

/** The set-action commands sent, in order. */
const actions = (): unknown[] => server!.log.filter((c) => c.execute === 'set-action').map((c) => c.arguments);
const restored = (noReboot: boolean) => ({ shutdown: 'poweroff', reboot: noReboot ? 'shutdown' : 'reset' });

/** SeaBIOS's own reset a moment after the guest runs again (a guest reset). */
const firmwareResetOnCont: FakeQmpOptions['on'] = {
  cont: (_c, q) => {
    q.status = 'running';
    setTimeout(() => q.emit('RESET', { guest: true, reason: 'guest-reset' }), 10);
    return { return: {} };
  },
};

describe('pause, resume, status', () => {
  it.each([
    { verb: 'pause', status: 'running', changed: true, sent: ['query-status', 'stop'], after: 'paused' },
    { verb: 'pause', status: 'paused', changed: false, sent: ['query-status'], after: 'paused' },
    { verb: 'resume', status: 'paused', changed: true, sent: ['query-status', 'cont'], after: 'running' },
    { verb: 'resume', status: 'running', changed: false, sent: ['query-status'], after: 'running' },
  ])('$verb when $status: changed=$changed', async ({ verb, status, changed, sent, after }) => {
    const t = await target({ status });
    expect(await (verb === 'pause' ? pauseVm(t) : resumeVm(t))).toBe(changed);
    expect(server!.names()).toEqual(sent);
    expect(await queryStatus(t.qmpSocket)).toBe(after);
  });

  it('a QMP error reply is an error naming the command', async () => {
    const t = await target({ on: { stop: () => ({ error: { class: 'GenericError', desc: 'not now' } }) } });
    await expect(pauseVm(t)).rejects.toThrow(/QMP .*: stop failed: not now/);
  });
});

describe('resetVm', () => {
  it('running, -no-reboot: reboot action "reset" while it is carried out, CPUs run again, the firmware\'s reset waited for, actions put back', async () => {
    const t = await target({ on: firmwareResetOnCont });
    expect(await resetVm(t)).toBe('running');
    expect(server!.names()).toEqual(['query-status', 'set-action', 'system_reset', 'cont', 'set-action', 'query-status']);
    expect(actions()).toEqual([{ reboot: 'reset' }, restored(true)]);
  });

  it('paused: reset without running it, and it stays paused', async () => {
    const t = await target({ status: 'paused' }, false);
    expect(await resetVm(t)).toBe('paused');
    expect(server!.names()).not.toContain('cont');
    expect(actions()).toEqual([{ reboot: 'reset' }, restored(false)]);
  });

  it('QMP hangs up mid-reply to the reset: a QMP error, not a hang; under -no-reboot the mark stays, and settling it puts the actions back', async () => {
    const t = await target({ on: { system_reset: () => 'hangup' } });
    const err = await resetVm(t).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UncloudError);
    expect((err as UncloudError).code).toBe('QMP_CLOSED');
    // qemu still resets on a reboot: the mark says so, and names this (live) process.
    expect(actions()).toEqual([{ reboot: 'reset' }]);
    expect(JSON.parse(readFileSync(t.rebootMark, 'utf8'))).toEqual(currentOwner(process.pid));
    // Its owner gone (as after a kill), status, stop or gc settle it.
    writeFileSync(t.rebootMark, JSON.stringify({ pid: 999_999_999, startTime: 1 }));
    expect(await settleAbandonedReboot(t)).toBe('restored');
    expect(actions()).toEqual([{ reboot: 'reset' }, restored(true)]);
    expect(existsSync(t.rebootMark)).toBe(false);
  });

  it('without -no-reboot a reset changes nothing that could be left behind: no mark', async () => {
    const t = await target({ on: { system_reset: () => 'hangup' } }, false);
    await resetVm(t).catch(() => undefined);
    expect(existsSync(t.rebootMark)).toBe(false);
  });
});

describe('rebootVm', () => {
  const opts = { timeoutMs: 2000, progress: () => undefined, pressEveryMs: 100 };

  it('the guest powers off: qemu keeps it, resets and runs it (power-cycled); the mark names us while it lasts, then goes', async () => {
    let markDuring: unknown;
    const t = await target({
      on: {
        ...firmwareResetOnCont,
        system_powerdown: (_c, q) => {
          markDuring = JSON.parse(readFileSync(join(tmp.path, 'reboot'), 'utf8'));
          q.status = 'shutdown';
          setTimeout(() => q.emit('SHUTDOWN', { guest: true, reason: 'guest-shutdown' }), 10);
          return { return: {} };
        },
      },
    });
    expect(await rebootVm(t, opts)).toBe('power-cycled');
    expect(markDuring).toEqual(currentOwner(process.pid));
    expect(existsSync(t.rebootMark)).toBe(false);
    expect(actions()).toEqual([{ shutdown: 'pause', reboot: 'reset' }, restored(true)]);
    expect(server!.names()).toContain('system_reset');
    expect(server!.names()).not.toContain('quit');
  });

  it('the guest reboots by itself: guest-rebooted, no reset from us', async () => {
    const t = await target({
      on: {
        system_powerdown: (_c, q) => {
          setTimeout(() => q.emit('RESET', { guest: true, reason: 'guest-reset' }), 10);
          return { return: {} };
        },
      },
    });
    expect(await rebootVm(t, opts)).toBe('guest-rebooted');
    expect(server!.names()).not.toContain('system_reset');
    expect(actions().at(-1)).toEqual(restored(true));
  });

  it('a paused VM is resumed first so the guest hears the button', async () => {
    const progress: string[] = [];
    const t = await target({
      status: 'paused',
      on: {
        system_powerdown: (_c, q) => {
          setTimeout(() => q.emit('RESET', { guest: true, reason: 'guest-reset' }), 10);
          return { return: {} };
        },
      },
    });
    expect(await rebootVm(t, { ...opts, progress: (m) => progress.push(m) })).toBe('guest-rebooted');
    expect(server!.names().slice(0, 2)).toEqual(['query-status', 'cont']);
    expect(progress[0]).toMatch(/VM vm1 is paused; resuming it/);
  });

  it('QMP hangs up at the power button: qemu still pauses on a power-off, so the mark stays for status, stop and gc', async () => {
    const t = await target({ on: { system_powerdown: () => 'hangup' } });
    const err = await rebootVm(t, opts).catch((e: unknown) => e);
    expect((err as UncloudError).code).toBe('QMP_CLOSED');
    expect(actions()).toEqual([{ shutdown: 'pause', reboot: 'reset' }]);
    expect(existsSync(t.rebootMark)).toBe(true);
  });

  it('a deaf guest: GUEST_DEAF after the timeout, pressed more than once, actions put back, mark gone, qemu left running', async () => {
    const t = await target();
    const err = await rebootVm(t, { ...opts, timeoutMs: 400 }).catch((e: unknown) => e);
    expect((err as UncloudError).code).toBe('GUEST_DEAF');
    expect((err as UncloudError).message).toMatch(/did not power off within 0\.4 s; it runs on unchanged/);
    expect(server!.names().filter((n) => n === 'system_powerdown').length).toBeGreaterThan(1);
    expect(actions().at(-1)).toEqual(restored(true));
    expect(server!.names()).not.toContain('quit');
    expect(existsSync(t.rebootMark)).toBe(false);
  });

  it('a guest that powered off just as the wait was given up: it ends as a power-off ends it (quit)', async () => {
    const t = await target({
      on: {
        system_powerdown: (_c, q) => {
          q.status = 'shutdown'; // no SHUTDOWN event reaches us
          return { return: {} };
        },
      },
    });
    await expect(rebootVm(t, { ...opts, timeoutMs: 200 })).rejects.toThrow(/did not power off/);
    expect(server!.names().at(-1)).toBe('quit');
  });
});

describe('settleAbandonedReboot', () => {
  const deadOwner = { pid: process.pid, startTime: -1 };
  const writeMark = (t: PowerTarget, text: string): void => writeFileSync(t.rebootMark, text);

  it('no mark and a status the caller already has: none, without a QMP round trip', async () => {
    const t = await target();
    expect(await settleAbandonedReboot(t, 'running')).toBe('none');
    expect(server!.names()).toEqual([]);
  });

  it('a mark whose owner is alive: rebooting, nothing touched', async () => {
    const t = await target();
    writeMark(t, JSON.stringify(currentOwner(process.pid)));
    expect(await settleAbandonedReboot(t)).toBe('rebooting');
    expect(server!.names()).toEqual([]);
    expect(existsSync(t.rebootMark)).toBe(true);
  });

  it.each([
    { what: 'a dead owner\'s mark', mark: JSON.stringify(deadOwner) },
    { what: 'a damaged mark', mark: '{"pid": "x"' },
    { what: 'a mark without a start time', mark: '{"pid": 1}' },
  ])('$what, qemu running: actions restored, mark removed', async ({ mark }) => {
    const t = await target({}, false);
    writeMark(t, mark);
    expect(await settleAbandonedReboot(t)).toBe('restored');
    expect(actions()).toEqual([restored(false)]);
    expect(existsSync(t.rebootMark)).toBe(false);
  });

  it('a dead owner\'s mark and a guest that powered off meanwhile: qemu told to quit (ended)', async () => {
    const t = await target({ status: 'shutdown' });
    writeMark(t, JSON.stringify(deadOwner));
    expect(await settleAbandonedReboot(t, 'shutdown')).toBe('ended');
    expect(server!.names()).toEqual(['query-status', 'quit']);
    expect(existsSync(t.rebootMark)).toBe(false);
  });

  it('no mark, status not known: asks qemu; a running one is left alone', async () => {
    const t = await target();
    expect(await settleAbandonedReboot(t)).toBe('none');
    expect(server!.names()).toEqual(['query-status']);
  });
});
