/** Which uncloud-vm units run: the one on PATH when it is this program, else this checkout's file (said why). */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { installedSelf, MAIN_JS } from '../../src/cli/self.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest();

describe('installedSelf', () => {
  it('the uncloud-vm on PATH that is this program (through a link), not another copy, not none', () => {
    const mine = join(tmp.path, 'mine');
    const other = join(tmp.path, 'other');
    mkdirSync(mine);
    mkdirSync(other);
    symlinkSync(MAIN_JS, join(mine, 'uncloud-vm'));
    writeFileSync(join(other, 'uncloud-vm'), '#!/bin/sh\n', { mode: 0o755 });
    expect(installedSelf(mine)).toBe(join(mine, 'uncloud-vm'));
    expect(installedSelf(`${other}:${mine}`)).toBeUndefined(); // the shell would run the other copy
    expect(installedSelf(tmp.path)).toBeUndefined();
  });
});
