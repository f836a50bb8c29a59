/** Directories that hold who-owns-what must be writable by their owner only. */
import { mkdirSync, statSync } from 'node:fs';
import { UncloudError } from '../core/errors.js';

export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  checkPrivateDir(dir);
}

export function checkPrivateDir(dir: string): void {
  const st = statSync(dir);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new UncloudError('DIR_UNSAFE', `${dir} is owned by uid ${st.uid}, not by this user (uid ${uid}); refusing to use it`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new UncloudError(
      'DIR_UNSAFE',
      `${dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); run 'chmod 700 ${dir}'`,
    );
  }
}
