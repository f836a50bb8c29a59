/** A byte-level snapshot of a directory tree, to prove a failed command changed nothing. */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  const walk = (d: string, rel: string): void => {
    for (const e of readdirSync(d).sort()) {
      const p = join(d, e);
      const st = statSync(p);
      const key = `${rel}${e}`;
      if (st.isDirectory()) {
        out[`${key}/`] = (st.mode & 0o777).toString(8);
        walk(p, `${key}/`);
      } else {
        out[key] = `${(st.mode & 0o777).toString(8)} ${readFileSync(p, 'base64')}`;
      }
    }
  };
  walk(dir, '');
  return out;
}
