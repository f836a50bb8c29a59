/** A full disk (a tiny tmpfs) gives a clear error and leaves the previous state intact. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, sandbox } from '../helpers/cli.js';
import { snapshot } from '../helpers/state.js';

let mnt: string;
beforeAll(() => {
  mnt = mkdtempSync(join(tmpdir(), 'uncloud-vm-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt]);
});
afterAll(() => {
  execFileSync('umount', [mnt]);
  rmSync(mnt, { recursive: true, force: true });
});

describe('disk full', () => {
  it('allocation fails with a clear error; the pool file and leases are as they were', async () => {
    const state = join(mnt, 'state');
    const sb = sandbox({ UNCLOUD_VM_STATE_DIR: state });
    try {
      for (let i = 0; i < 3; i++) expect((await cli(['mac', 'allocate'], { env: sb.env })).code).toBe(0);
      // Fill what is left of the file system.
      mkdirSync(join(mnt, 'fill'));
      let n = 0;
      try {
        for (;;) writeFileSync(join(mnt, 'fill', String(n++)), Buffer.alloc(4096));
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
      }
      const before = snapshot(state);
      const r = await cli(['mac', 'allocate'], { env: sb.env });
      expect(r.code).toBe(1);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr.trimEnd()).toMatch(/^uncloud-vm: cannot write .*: no space left on device; the previous state is kept$/);
      expect(snapshot(state)).toEqual(before);
      // Space back: allocation goes on where it left off.
      rmSync(join(mnt, 'fill'), { recursive: true });
      const ok = await cli(['mac', 'allocate'], { env: sb.env });
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout.trim()).toBe('42:00:00:00:00:04');
    } finally {
      sb.cleanup();
    }
  });
});
