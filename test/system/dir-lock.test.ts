/** The directory lock: serialises, is given back however the section ends, waits for a live holder, breaks a dead one's. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UncloudError } from '../../src/core/errors.js';
import { tryDirLock, withDirLock } from '../../src/system/dir-lock.js';
import { ROOT } from '../helpers/cli.js';
import { killAndWait } from '../helpers/process.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest('uncloud-vm-dir-lock-');
const opts = { name: '.lock', what: 'the test dir', staleMs: 2000 };
const lockPath = (): string => join(tmp.path, opts.name);

const children: ChildProcess[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.pid) await killAndWait(c.pid);
});

/** Another process holding the lock (through the module itself, built), until it is killed or told to let go on stdin. */
async function holdInChild(staleMs = opts.staleMs): Promise<ChildProcess> {
  const script = `
    import { tryDirLock } from ${JSON.stringify(join(ROOT, 'dist/system/dir-lock.js'))};
    const release = await tryDirLock(process.argv[1], { name: '.lock', what: 'x', staleMs: ${staleMs} });
    process.stdout.write(release ? 'held\\n' : 'busy\\n');
    process.stdin.once('data', async () => { await release?.(); process.stdout.write('released\\n'); process.exit(0); });
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, tmp.path], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  const first = await new Promise<string>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
  expect(first).toBe('held');
  return child;
}

describe('withDirLock', () => {
  it('runs the section, returns its value and gives the lock back', async () => {
    const seen: boolean[] = [];
    const v = await withDirLock(tmp.path, opts, () => {
      seen.push(existsSync(lockPath()));
      return 42;
    });
    expect(v).toBe(42);
    expect(seen).toEqual([true]);
    expect(existsSync(lockPath())).toBe(false);
  });

  it('a section that throws: the error passes through and the lock is given back', async () => {
    await expect(
      withDirLock(tmp.path, opts, async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(existsSync(lockPath())).toBe(false);
    expect(await withDirLock(tmp.path, opts, () => 'again')).toBe('again');
  });

  it('sections in one process never overlap', async () => {
    let inside = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      [0, 1, 2, 3, 4, 5].map((i) =>
        withDirLock(tmp.path, opts, async () => {
          inside += 1;
          most = Math.max(most, inside);
          await new Promise((r) => setTimeout(r, 5));
          order.push(i);
          inside -= 1;
        }),
      ),
    );
    expect(most).toBe(1);
    expect(order.sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('a live holder in another process: waits for it, then runs', async () => {
    const child = await holdInChild();
    let ran = false;
    const section = withDirLock(tmp.path, opts, () => {
      ran = true;
    });
    // Still held: the section has not run while the holder keeps the lock fresh (well past the stale time).
    await new Promise((r) => setTimeout(r, opts.staleMs + 1000));
    expect(ran).toBe(false);
    const released = new Promise<string>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim())));
    child.stdin!.write('go\n');
    expect(await released).toBe('released');
    await section;
    expect(ran).toBe(true);
  });

  it('a holder that died (SIGKILL): its lock is broken once stale, and the section runs', async () => {
    const child = await holdInChild();
    await killAndWait(child.pid!);
    expect(existsSync(lockPath())).toBe(true);
    expect(await withDirLock(tmp.path, opts, () => 'after the dead holder')).toBe('after the dead holder');
    expect(existsSync(lockPath())).toBe(false);
  });

  it('a stale lock left by nobody (old mtime) is broken at once', async () => {
    mkdirSync(lockPath());
    const old = new Date(Date.now() - 60_000);
    utimesSync(lockPath(), old, old);
    expect(await withDirLock(tmp.path, { ...opts, staleMs: 10_000 }, () => 'taken')).toBe('taken');
  });

  it('a lock lost during the section (its dir removed): LOCK_LOST, naming what', async () => {
    const err = await withDirLock(tmp.path, opts, async () => {
      rmSync(lockPath(), { recursive: true });
      // proper-lockfile checks its lock every staleMs / 2.
      await new Promise((r) => setTimeout(r, opts.staleMs));
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UncloudError);
    expect((err as UncloudError).code).toBe('LOCK_LOST');
    expect((err as UncloudError).message).toMatch(/^lost the lock of the test dir: /);
  });

  // Only a lock another holds is waited for; before, any error was tried 2,000 times (about 80 s).
  it('a dir that does not exist: LOCK_BUSY naming what, at once, and the section never runs', { timeout: 10_000 }, async () => {
    let ran = false;
    const err = await withDirLock(join(tmp.path, 'missing'), opts, () => (ran = true)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UncloudError);
    expect((err as UncloudError).code).toBe('LOCK_BUSY');
    expect((err as UncloudError).message).toMatch(/^cannot lock the test dir: .*ENOENT/);
    expect(ran).toBe(false);
  });
});

describe('tryDirLock', () => {
  it('takes a free lock at once; a second try gets null until the first lets go', async () => {
    const release = await tryDirLock(tmp.path, opts);
    expect(release).toBeTypeOf('function');
    expect(existsSync(lockPath())).toBe(true);
    expect(await tryDirLock(tmp.path, opts)).toBeNull();
    await release!();
    expect(existsSync(lockPath())).toBe(false);
    const again = await tryDirLock(tmp.path, opts);
    expect(again).toBeTypeOf('function');
    await again!();
  });

  it('held by a live process: null, without waiting; the lock stays that process\'s', async () => {
    await holdInChild();
    expect(await tryDirLock(tmp.path, opts)).toBeNull();
    expect(existsSync(lockPath())).toBe(true);
  });

  it('held by a dead process, once stale: taken', async () => {
    const child = await holdInChild();
    await killAndWait(child.pid!);
    const old = new Date(Date.now() - 60_000);
    utimesSync(lockPath(), old, old);
    const release = await tryDirLock(tmp.path, opts);
    expect(release).toBeTypeOf('function');
    await release!();
  });

  it('the directory going away while held is not an error: release still resolves', async () => {
    const dir = join(tmp.path, 'vm');
    mkdirSync(dir);
    const release = await tryDirLock(dir, opts);
    rmSync(dir, { recursive: true });
    await new Promise((r) => setTimeout(r, opts.staleMs));
    await expect(release!()).resolves.toBeUndefined();
  });

  it('a dir that does not exist: LOCK_BUSY, not null', async () => {
    const err = await tryDirLock(join(tmp.path, 'missing'), opts).catch((e: unknown) => e);
    expect((err as UncloudError).code).toBe('LOCK_BUSY');
  });
});
