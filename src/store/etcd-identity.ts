/** What a named VM had last time, under <prefix>/vms/<name> in the etcd store. Holds no address. */
import type { EtcdConn } from './etcd-client.js';
import { prefixPages } from './etcd-read.js';
import { parseIdentity } from './lease.js';
import type { VmIdentity } from './store.js';

export async function getIdentity(c: EtcdConn, name: string): Promise<VmIdentity | null> {
  const text = await c.call('lookup', () => c.client.get(c.vmKey(name)).string());
  return text === null ? null : parseIdentity(text, c.vmKey(name));
}

export async function putIdentity(c: EtcdConn, identity: VmIdentity): Promise<void> {
  await c.call('write', () => c.client.put(c.vmKey(identity.name)).value(JSON.stringify(identity)).exec());
}

export async function listIdentities(c: EtcdConn): Promise<VmIdentity[]> {
  const out: VmIdentity[] = [];
  for await (const page of prefixPages(c, 'list', `${c.prefix}/vms/`)) out.push(...page.map(([k, v]) => parseIdentity(v, k)));
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Returns whether there was one. */
export async function deleteIdentity(c: EtcdConn, name: string): Promise<boolean> {
  const r = await c.call('delete', () => c.client.delete().key(c.vmKey(name)).exec());
  return Number(r.deleted) > 0;
}
