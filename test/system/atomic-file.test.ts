/** Whole-file writes: replaced or created in one step, with the mode asked for, no temp file left behind. */
import { mkdirSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createFileExclusive, linkStaged, placeStaged, readTextIfExists, removeQuietly, removeStaged, stageFile, syncStaged, writeFileAtomic } from '../../src/system/atomic-file.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest();

describe('atomic files', () => {
  it('writeFileAtomic replaces a file whole, with its mode, and leaves no temp file', () => {
    const p = join(tmp.path, 'pool.json');
    writeFileSync(p, 'old');
    writeFileAtomic(p, 'new', 0o640);
    expect(readTextIfExists(p)).toBe('new');
    expect(statSync(p).mode & 0o777).toBe(0o640);
    expect(readdirSync(tmp.path)).toEqual(['pool.json']);
  });

  it('createFileExclusive: the first claim wins, the second is told it lost and changes nothing', () => {
    const p = join(tmp.path, '420000000001.json');
    expect(createFileExclusive(p, 'first')).toBe(true);
    expect(createFileExclusive(p, 'second')).toBe(false);
    expect(readTextIfExists(p)).toBe('first');
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(readdirSync(tmp.path)).toEqual(['420000000001.json']);
  });

  it('a write into a dir that does not exist fails with a clear error and leaves nothing', () => {
    expect(() => writeFileAtomic(join(tmp.path, 'no', 'f'), 'x')).toThrow(/no/);
    expect(readdirSync(tmp.path)).toEqual([]);
  });

  it('staged files (synced together): none is in place until placed, then each as writeFileAtomic or createFileExclusive leaves it, no temp file left', async () => {
    const pool = join(tmp.path, 'pool.json');
    const lease = join(tmp.path, '420000000001.json');
    const tmpDir = join(tmp.path, 'tmp');
    mkdirSync(tmpDir);
    writeFileSync(pool, 'old');
    const staged = [stageFile(pool, 'new', 0o600, tmpDir), stageFile(lease, 'first', 0o600, tmpDir)];
    await syncStaged(staged);
    expect([readTextIfExists(pool), readTextIfExists(lease)]).toEqual(['old', null]);
    placeStaged(staged[0]!);
    expect(readTextIfExists(pool)).toBe('new');
    expect(linkStaged(staged[1]!)).toBe(true);
    const second = stageFile(lease, 'second', 0o600, tmpDir);
    expect(linkStaged(second)).toBe(false);
    removeStaged([...staged, second]);
    expect(readTextIfExists(lease)).toBe('first');
    expect(statSync(lease).mode & 0o777).toBe(0o600);
    expect(readdirSync(tmpDir)).toEqual([]);
  });

  it('a staged file that cannot be synced (its temp file gone) is a write error naming the file, and nothing is in place', async () => {
    const lease = join(tmp.path, '420000000001.json');
    const staged = stageFile(lease, 'x');
    unlinkSync(staged.tmp);
    await expect(syncStaged([staged])).rejects.toThrow(`cannot write ${lease}:`);
    expect(readdirSync(tmp.path)).toEqual([]);
  });

  it('readTextIfExists and removeQuietly take a missing file in their stride', () => {
    expect(readTextIfExists(join(tmp.path, 'none'))).toBeNull();
    expect(() => removeQuietly(join(tmp.path, 'none'))).not.toThrow();
  });
});
