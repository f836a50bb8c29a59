/** Dirs that hold who-owns-what: made 0700, and refused when group or others may write them. */
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkPrivateDir, ensurePrivateDir } from '../../src/system/private-dir.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest();

describe('private dirs', () => {
  it('ensurePrivateDir makes the whole path, the last dir 0700', () => {
    const d = join(tmp.path, 'a', 'b');
    ensurePrivateDir(d);
    expect(statSync(d).mode & 0o777).toBe(0o700);
    expect(() => ensurePrivateDir(d)).not.toThrow();
  });

  it.each([0o777, 0o770, 0o702])('a dir with mode %o is refused with the chmod that fixes it', (mode) => {
    const d = join(tmp.path, 'open');
    mkdirSync(d);
    chmodSync(d, mode);
    expect(() => checkPrivateDir(d)).toThrow(`${d} is writable by group or others (mode ${mode.toString(8)}); run 'chmod 700 ${d}'`);
  });

  it('read-only for others is fine', () => {
    chmodSync(tmp.path, 0o755);
    expect(() => checkPrivateDir(tmp.path)).not.toThrow();
  });
});
