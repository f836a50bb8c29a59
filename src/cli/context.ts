/** What every command gets: resolved settings, the pool, the store, and where to write. */
import { parsePool, type Pool } from '../core/mac.js';
import { type OpenOptions, openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';
import { type Overrides, resolveSettings, type Settings } from '../system/config.js';
import { write } from './output.js';

export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

export interface Context extends Io {
  settings: Settings;
  pool: Pool;
  /** Opened on first use, so verbs that need no store never load one; the first call's options stick. */
  store: (opts?: OpenOptions) => Promise<Store>;
  close: () => Promise<void>;
}

export const stdio: Io = {
  out: (text) => write(1, `${text}\n`),
  err: (text) => write(2, `uncloud-vm: ${text}\n`),
};

export function makeContext(flags: Overrides, io: Io = stdio): Context {
  const settings = resolveSettings(flags);
  const pool = parsePool(settings.prefix, { force: settings.forcePrefix });
  let store: Promise<Store> | undefined;
  return {
    ...io,
    settings,
    pool,
    store: (opts) => (store ??= openStore(settings, { onLeaseTrouble: io.err, ...opts })),
    close: async () => {
      if (store) await (await store.catch(() => undefined))?.close();
    },
  };
}

/** Print a table with aligned columns. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}
