/** Whole-file writes: replaced or created in one step, with the mode asked for, no temp file left behind. */
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createFileExclusive, readTextIfExists, removeQuietly, writeFileAtomic } from '../../src/system/atomic-file.js';
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

  it('readTextIfExists and removeQuietly take a missing file in their stride', () => {
    expect(readTextIfExists(join(tmp.path, 'none'))).toBeNull();
    expect(() => removeQuietly(join(tmp.path, 'none'))).not.toThrow();
  });
});
