/** What a named VM had last time, under <prefix>/vms/<name> in the etcd store. Holds no address. */
import type { EtcdConn } from './etcd-client.js';
import { prefixPages } from './etcd-read.js';
import { parseIdentity } from './lease.js';
import type { DamagedRecord, VmIdentity } from './store.js';

export async function getIdentity(c: EtcdConn, name: string): Promise<VmIdentity | null> {
  const text = await c.call('lookup', () => c.client.get(c.vmKey(name)).string());
  return text === null ? null : parseIdentity(text, c.vmKey(name));
}

export async function putIdentity(c: EtcdConn, identity: VmIdentity): Promise<void> {
  await c.call('write', () => c.client.put(c.vmKey(identity.name)).value(JSON.stringify(identity)).exec());
}

export async function listIdentities(c: EtcdConn): Promise<{ identities: VmIdentity[]; damaged: DamagedRecord[] }> {
  const identities: VmIdentity[] = [];
  const damaged: DamagedRecord[] = [];
  for await (const page of prefixPages(c, 'list', `${c.prefix}/vms/`)) {
    for (const [k, v] of page) {
      try {
        identities.push(parseIdentity(v, k));
      } catch (err) {
        damaged.push({ key: k, why: (err as Error).message });
      }
    }
  }
  return { identities: identities.sort((a, b) => a.name.localeCompare(b.name)), damaged };
}

/** Returns whether there was one. */
export async function deleteIdentity(c: EtcdConn, name: string): Promise<boolean> {
  const r = await c.call('delete', () => c.client.delete().key(c.vmKey(name)).exec());
  return Number(r.deleted) > 0;
}
