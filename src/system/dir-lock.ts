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

/** Tries while another holds the lock: 2 ms, then 1.3 times longer each, at most 40 ms (times 1-2 at random): over a minute in all. */
const LOCK_TRIES = 2000;

export async function withDirLock<T>(dir: string, opts: DirLockOptions, fn: () => T | Promise<T>): Promise<T> {
  const { lock } = await import('proper-lockfile');
  let compromised: Error | undefined;
  let unlock: () => Promise<void>;
  // Waited for only while another holds it (ELOCKED): the library would retry any error, so a directory
  // that does not exist (or cannot be written) would take 2,000 tries, over a minute, to be reported.
  for (let attempt = 0; ; attempt++) {
    try {
      unlock = await lock(dir, {
        lockfilePath: join(dir, opts.name),
        realpath: false,
        stale: opts.staleMs ?? 10_000,
        retries: 0,
        onCompromised: (err) => {
          compromised = err;
        },
      });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED' || attempt >= LOCK_TRIES) {
        throw new UncloudError('LOCK_BUSY', `cannot lock ${opts.what}: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, Math.min(40, 2 * 1.3 ** attempt) * (1 + Math.random())));
    }
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
