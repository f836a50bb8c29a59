import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../src/store/file-store.js';
import { storeContract } from './contract.js';

storeContract('file store', () => {
  const dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-store-'));
  return {
    make: async ({ isAlive, host }) => new FileStore({ dir: join(dir, 'state'), isAlive, ...(host ? { host } : {}) }),
    corrupt: async (mac, text) => writeFileSync(join(dir, 'state', 'leases', `${mac.replaceAll(':', '')}.json`), text),
    corruptIdentity: async (name, text) => writeFileSync(join(dir, 'state', 'vms', `${name}.json`), text),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
