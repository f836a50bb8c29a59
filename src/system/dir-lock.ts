/**
 * A lock on a directory (proper-lockfile: an atomic mkdir, refreshed while held, broken when its holder
 * died). Serialises the short critical sections of the file store and of run-dir claims.
 */
import { join } from 'node:path';
import { UncloudError } from '../core/errors.js';

export interface DirLockOptions {
  /** Name of the lock inside dir. */
  name: string;
  /** What is locked, for messages. */
  what: string;
  /** Milliseconds a crashed holder's lock stays before others break it. */
  staleMs?: number;
}

export async function withDirLock<T>(dir: string, opts: DirLockOptions, fn: () => T | Promise<T>): Promise<T> {
  const { lock } = await import('proper-lockfile');
  let compromised: Error | undefined;
  let unlock: () => Promise<void>;
  try {
    unlock = await lock(dir, {
      lockfilePath: join(dir, opts.name),
      realpath: false,
      stale: opts.staleMs ?? 10_000,
      retries: { retries: 2000, factor: 1.3, minTimeout: 2, maxTimeout: 40, randomize: true },
      onCompromised: (err) => {
        compromised = err;
      },
    });
  } catch (err) {
    throw new UncloudError('LOCK_BUSY', `cannot lock ${opts.what}: ${(err as Error).message}`);
  }
  try {
    const result = await fn();
    if (compromised) throw new UncloudError('LOCK_LOST', `lost the lock of ${opts.what}: ${compromised.message}`);
    return result;
  } finally {
    await unlock().catch(() => undefined);
  }
}

/**
 * Take a lock on a directory for as long as a session lasts, without waiting: returns its release, or null
 * when another holds it. The directory going away meanwhile (the VM ended) is not an error.
 */
export async function tryDirLock(dir: string, opts: DirLockOptions): Promise<(() => Promise<void>) | null> {
  const { lock } = await import('proper-lockfile');
  try {
    const unlock = await lock(dir, {
      lockfilePath: join(dir, opts.name),
      realpath: false,
      stale: opts.staleMs ?? 10_000,
      retries: 0,
      onCompromised: () => undefined,
    });
    return () => unlock().catch(() => undefined);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOCKED') return null;
    throw new UncloudError('LOCK_BUSY', `cannot lock ${opts.what}: ${(err as Error).message}`);
  }
}
