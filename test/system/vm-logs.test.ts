/** A VM's logs: a header per start on a line of its own, rotation to .1 over the cap, generations in order. */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { vmLogFiles } from '../../src/core/vm-files.js';
import { getEventListeners } from 'node:events';
import { followLog, hasLogs, logGenerations, openVmLogs, readFrom, removeVmLogs } from '../../src/system/vm-logs.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest();

describe('openVmLogs', () => {
  it('marks each start in both logs, on a line of its own, and returns where this run of qemu.log begins', () => {
    const logs = vmLogFiles(tmp.path, 'web1');
    expect(hasLogs(logs)).toBe(false);
    expect(openVmLogs(logs, '-- start 1 --')).toBe('-- start 1 --\n'.length);
    expect(statSync(logs.dir).mode & 0o777).toBe(0o700);
    expect(statSync(logs.serial).mode & 0o777).toBe(0o600);
    writeFileSync(logs.serial, 'guest said this without a newline', { flag: 'a' });
    writeFileSync(logs.qemu, 'qemu: warning\n', { flag: 'a' });
    const at = openVmLogs(logs, '-- start 2 --');
    expect(readFileSync(logs.serial, 'utf8')).toBe('-- start 1 --\nguest said this without a newline\n-- start 2 --\n');
    expect(readFrom(logs.qemu, at)).toBe('');
    expect(readFileSync(logs.qemu, 'utf8').slice(0, at)).toBe('-- start 1 --\nqemu: warning\n-- start 2 --\n');
  });

  it('a log over the cap becomes .1 (one older generation) and the new one starts with the header', () => {
    const logs = vmLogFiles(tmp.path, 'web1');
    openVmLogs(logs, '-- 1 --', 16);
    writeFileSync(logs.serial, 'x'.repeat(32), { flag: 'a' });
    openVmLogs(logs, '-- 2 --', 16);
    expect(readFileSync(`${logs.serial}.1`, 'utf8')).toBe(`-- 1 --\n${'x'.repeat(32)}`);
    expect(readFileSync(logs.serial, 'utf8')).toBe('-- 2 --\n');
    // qemu.log was under the cap: appended to, not rotated.
    expect(logGenerations(logs.qemu)).toEqual([logs.qemu]);
    expect(logGenerations(logs.serial)).toEqual([`${logs.serial}.1`, logs.serial]);
    removeVmLogs(logs);
    expect(hasLogs(logs)).toBe(false);
    expect(logGenerations(logs.serial)).toEqual([]);
  });
});

describe('followLog', () => {
  it('writes what is appended, reads a rotated log from its start, and keeps one abort listener however long it polls', async () => {
    const path = `${tmp.path}/serial.log`;
    writeFileSync(path, 'old\n');
    const stop = new AbortController();
    const got: string[] = [];
    const following = followLog(path, 4, (c) => got.push(c.toString()), stop.signal, 1);
    const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
    await wait(50);
    writeFileSync(path, 'one\n', { flag: 'a' });
    await wait(50);
    writeFileSync(path, 'new\n'); // rotated: shorter than what was read
    await wait(50);
    // Over a hundred polls so far: listeners of ended waits are gone.
    expect(getEventListeners(stop.signal, 'abort').length).toBeLessThanOrEqual(1);
    stop.abort();
    await following;
    expect(got.join('')).toBe('one\nnew\n');
    expect(getEventListeners(stop.signal, 'abort')).toEqual([]);
  });
});
