/** Run records read back or said to be damaged (never thrown), and the staging dirs a killed claim leaves. */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { vmRunFiles } from '../../src/core/vm-files.js';
import { createRunDir, oldStagingDirs, readRecord, runDirNames, STAGING_MAX_AGE_MS, STAGING_PREFIX, type VmRecord } from '../../src/system/run-dir.js';
import { ROOT } from '../helpers/cli.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest();
const record = (name: string): VmRecord => ({
  version: 1, name, uuid: '11111111-2222-4333-8444-555555555555', launcher: null, qemu: null, managedBy: 'launcher',
  taps: ['uc0123456789n0'], nics: [], started: '2026-01-01T00:00:00.000Z', qmpSocket: '/x/qmp.sock', serialLog: '/x/serial.log',
});

describe('readRecord', () => {
  it('a record written by createRunDir reads back as it was, its dir 0700 and no staging dir left', () => {
    createRunDir(tmp.path, vmRunFiles(tmp.path, 'web1'), record('web1'));
    expect(readRecord(join(tmp.path, 'web1', 'vm.json'))).toEqual({ record: record('web1'), damaged: null });
    expect(statSync(join(tmp.path, 'web1')).mode & 0o777).toBe(0o700);
    expect(readdirSync(tmp.path)).toEqual(['web1']);
  });

  it('a record of an older version gets its defaults (managedBy, taps from the NICs)', () => {
    const { managedBy: _m, taps: _t, ...old } = { ...record('o'), nics: [{ index: 0, mac: '42:00:00:00:00:01', tap: 'ucaaaaaaaaaan0', bridge: 'br0' }] };
    writeFileSync(join(tmp.path, 'vm.json'), JSON.stringify(old));
    expect(readRecord(join(tmp.path, 'vm.json')).record).toMatchObject({ managedBy: 'launcher', taps: ['ucaaaaaaaaaan0'] });
  });

  it.each([
    ['{"version":2}', 'version 2, this uncloud-vm reads 1'],
    ['{"version":1,"name":"x"}', 'missing name, uuid or nics'],
    ['{"version":1', 'not valid JSON'],
    ['', 'not valid JSON'],
  ])('%j is damaged: %s', (text, why) => {
    writeFileSync(join(tmp.path, 'vm.json'), text);
    expect(readRecord(join(tmp.path, 'vm.json'))).toEqual({ record: null, damaged: why });
  });

  it('no record: none, and not damaged; a directory in its place: damaged, said why', () => {
    expect(readRecord(join(tmp.path, 'vm.json'))).toEqual({ record: null, damaged: null });
    mkdirSync(join(tmp.path, 'vm.json'));
    expect(readRecord(join(tmp.path, 'vm.json'))).toEqual({ record: null, damaged: 'cannot be read (a directory)' });
    // A FIFO: named plainly, not by a made-up errno.
    execFileSync('mkfifo', [join(tmp.path, 'fifo.json')]);
    expect(readRecord(join(tmp.path, 'fifo.json'))).toEqual({ record: null, damaged: 'cannot be read (not a regular file)' });
  });
});

describe('runDirNames and oldStagingDirs', () => {
  it('VM dirs are real directories not starting with a dot; staging dirs count once older than the limit', () => {
    mkdirSync(join(tmp.path, 'web1'));
    symlinkSync(join(tmp.path, 'web1'), join(tmp.path, 'web1.link'));
    writeFileSync(join(tmp.path, 'notes.txt'), '');
    const young = join(tmp.path, `${STAGING_PREFIX}young`);
    const old = join(tmp.path, `${STAGING_PREFIX}old`);
    mkdirSync(young);
    mkdirSync(old);
    const now = Date.now();
    utimesSync(old, new Date(now - STAGING_MAX_AGE_MS - 5000), new Date(now - STAGING_MAX_AGE_MS - 5000));
    expect(runDirNames(tmp.path)).toEqual(['web1']);
    expect(oldStagingDirs(tmp.path, now)).toEqual([old]);
    expect(runDirNames(join(tmp.path, 'nonexistent'))).toEqual([]);
    expect(oldStagingDirs(join(tmp.path, 'nonexistent'))).toEqual([]);
  });
});

describe('removeDir', () => {
  it('a process killed while it removes a run dir leaves the run dir whole or gone, never half of it (a staging dir instead)', async () => {
    const dir = join(tmp.path, 'web1');
    mkdirSync(dir);
    writeFileSync(join(dir, 'vm.json'), '{}');
    for (let i = 0; i < 20_000; i++) writeFileSync(join(dir, `f${i}`), '');
    const mod = join(ROOT, 'dist/system/run-dir.js');
    const child = spawn(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(mod)}); process.stdout.write('go'); m.removeDir(${JSON.stringify(dir)});`]);
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    // Killed as soon as the removal shows: the dir is gone, or has lost some of its files.
    while (existsSync(dir) && readdirSync(dir).length === 20_001 && child.exitCode === null) await new Promise((r) => setImmediate(r));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const left = existsSync(dir) ? readdirSync(dir).length : 0;
    expect([0, 20_001]).toContain(left);
    expect(readdirSync(tmp.path).filter((e) => e !== 'web1' && !e.startsWith(STAGING_PREFIX))).toEqual([]);
  });
});

