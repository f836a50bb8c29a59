/**
 * A full disk (a tiny tmpfs) gives a clear error and leaves the previous state intact; a VM that ends while
 * the store cannot take its MAC back says so, and gc gives it back once there is space.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, sandbox } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';
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

const fake = fakeQemuEnvironment({ env: { FAKE_QEMU_QMP: '1', FAKE_QEMU_SLEEP: '600' } });

/** Fill what is left of the tmpfs; returns the way to give the space back. */
function fillDisk(): () => void {
  const fill = join(mnt, `fill-${Date.now()}`);
  mkdirSync(fill);
  try {
    for (let n = 0; ; n++) writeFileSync(join(fill, String(n)), Buffer.alloc(4096));
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
  }
  return () => rmSync(fill, { recursive: true });
}

describe('disk full when a VM ends', () => {
  it('stop: one line saying the store kept the MAC (exit 1), the run dir stays; space back, gc gives it back', async () => {
    const env = { UNCLOUD_VM_STATE_DIR: join(mnt, 'vm-state') };
    const leases = async () => JSON.parse((await fake.run(['mac', 'list', '--json'], env)).stdout) as { mac: string; state: string }[];
    const started = await fake.start(['--name', 'full', '--detach'], env);
    expect(started.code, started.stderr).toBe(0);
    const [lease] = await leases();
    const spaceBack = fillDisk();
    try {
      const r = await fake.run(['stop', 'full'], env);
      expect(r.code).toBe(1);
      // The progress of the stop, then the one error line.
      expect(r.stderr.trimEnd().split('\n').slice(-1)).toEqual([
        expect.stringMatching(new RegExp(`^uncloud-vm: VM full has ended, but the store did not take back ${lease!.mac} \\(.*no space left on device.*\\); its run dir stays, and 'uncloud-vm gc' gives it back once the store answers$`)),
      ]);
      // Nothing was lost: the lease is still there (stale now), and so is the run dir that says whose it is.
      expect((await leases()).map((l) => [l.mac, l.state])).toEqual([[lease!.mac, 'stale']]);
      expect(existsSync(join(fake.sb.runDir, 'full'))).toBe(true);
      const stillFull = await fake.run(['gc'], env);
      expect(stillFull.code).toBe(1);
      expect(stillFull.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(/no space left on device/)]);
      expect((await leases()).map((l) => l.mac)).toEqual([lease!.mac]);
      expect(existsSync(join(fake.sb.runDir, 'full'))).toBe(true);
    } finally {
      spaceBack();
    }
    const gc = await fake.run(['gc'], env);
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(new RegExp(`freed ${lease!.mac} \\(VM full nic0\\)`));
    expect(gc.stdout).toMatch(/removed run dir full/);
    expect(await leases()).toEqual([]);
    expect(existsSync(join(fake.sb.runDir, 'full'))).toBe(false);
  });
});
