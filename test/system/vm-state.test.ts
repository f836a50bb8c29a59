/**
 * What counts as a VM's running qemu, with the process facts swapped for a table: alive with the recorded
 * start time and a command line that names the VM's run dir; a reused pid never passes.
 */
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Owner } from '../../src/core/owner.js';
import { vmRunFiles } from '../../src/core/vm-files.js';
import type { VmRecord } from '../../src/system/run-dir.js';
import { type ObserveDeps, observeAll, observeVm, runsFrom, UNIT_START_GRACE_S } from '../../src/system/vm-state.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest();
const NOW = Date.parse('2026-01-01T12:00:00Z');
const qemu: Owner = { pid: 4242, startTime: 777 };
const launcher: Owner = { pid: 4141, startTime: 666 };

/** Processes as a table: who is alive (pid with its start time) and their command lines. */
const deps = (alive: Owner[], cmdlines: Record<number, string[]>, now = NOW): ObserveDeps => ({
  isAlive: (o) => alive.some((a) => a.pid === o.pid && a.startTime === o.startTime),
  cmdline: (pid) => cmdlines[pid] ?? null,
  now,
});

function writeVm(name: string, rec: Partial<VmRecord>): string {
  const files = vmRunFiles(tmp.path, name);
  mkdirSync(files.dir, { recursive: true });
  const record: VmRecord = {
    version: 1, name, uuid: '11111111-2222-4333-8444-555555555555', launcher: null, qemu: null, managedBy: 'launcher',
    taps: [], nics: [], started: new Date(NOW - 1000).toISOString(), qmpSocket: files.qmpSocket, serialLog: '', ...rec,
  };
  writeFileSync(files.record, JSON.stringify(record));
  return files.dir;
}

describe('runsFrom', () => {
  it.each([
    [['qemu-system-x86_64', '-pidfile', '/run/u/web1/qemu.pid'], '/run/u/web1', true],
    [['/bin/sh', '/run/u/web1/exec.sh'], '/run/u/web1', true],
    [['qemu-system-x86_64', '-pidfile', '/run/u/web10/qemu.pid'], '/run/u/web1', false],
    [['sleep', '60'], '/run/u/web1', false],
    [null, '/run/u/web1', false],
  ])('%j from %s: %s', (cmdline, dir, want) => {
    expect(runsFrom(cmdline, dir)).toBe(want);
  });
});

describe('observeVm', () => {
  it('running: the recorded qemu is alive and its command line names the run dir', () => {
    const dir = writeVm('web1', { qemu });
    const o = observeVm(tmp.path, 'web1', deps([qemu], { [qemu.pid]: ['qemu', '-pidfile', `${dir}/qemu.pid`] }));
    expect([o.phase, o.qemu, o.damaged]).toEqual(['running', qemu, null]);
  });

  it('a reused pid (another start time) or a pid that runs something else is not the VM: dead', () => {
    const dir = writeVm('web1', { qemu });
    const reused = { pid: qemu.pid, startTime: 999 };
    expect(observeVm(tmp.path, 'web1', deps([reused], { [qemu.pid]: ['qemu', '-pidfile', `${dir}/qemu.pid`] })).phase).toBe('dead');
    expect(observeVm(tmp.path, 'web1', deps([qemu], { [qemu.pid]: ['sleep', '600'] })).phase).toBe('dead');
  });

  it('starting: its launcher runs and qemu does not yet', () => {
    writeVm('web1', { launcher });
    const o = observeVm(tmp.path, 'web1', deps([launcher], {}));
    expect([o.phase, o.launcher, o.qemu]).toEqual(['starting', launcher, null]);
  });

  it(`a unit's VM between ExecStartPre and qemu is starting for ${UNIT_START_GRACE_S} s, then dead`, () => {
    writeVm('u1', { managedBy: 'unit', started: new Date(NOW).toISOString() });
    expect(observeVm(tmp.path, 'u1', deps([], {}, NOW + (UNIT_START_GRACE_S - 1) * 1000)).phase).toBe('starting');
    expect(observeVm(tmp.path, 'u1', deps([], {}, NOW + (UNIT_START_GRACE_S + 1) * 1000)).phase).toBe('dead');
  });

  it('a run dir without a record: starting while young (a claim in progress), dead when old', () => {
    const dir = join(tmp.path, 'claiming');
    mkdirSync(dir);
    expect(observeVm(tmp.path, 'claiming', deps([], {}, Date.now())).phase).toBe('starting');
    const old = new Date(Date.now() - 60_000);
    utimesSync(dir, old, old);
    const o = observeVm(tmp.path, 'claiming', deps([], {}, Date.now()));
    expect([o.phase, o.record, o.damaged]).toEqual(['dead', null, null]);
  });

  it('a damaged record says why', () => {
    const dir = join(tmp.path, 'bad');
    mkdirSync(dir);
    writeFileSync(join(dir, 'vm.json'), '{"version":2}');
    expect(observeVm(tmp.path, 'bad', deps([], {})).damaged).toBe('version 2, this uncloud-vm reads 1');
  });

  it('observeAll: every VM dir, none of the dot-entries', () => {
    writeVm('a', {});
    writeVm('b', {});
    mkdirSync(join(tmp.path, '.staging-x'));
    writeFileSync(join(tmp.path, 'stray.txt'), '');
    expect(observeAll(tmp.path, deps([], {})).map((o) => o.name).sort()).toEqual(['a', 'b']);
  });
});
