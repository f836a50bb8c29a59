/** A real etcd (Debian's etcd-server) on loopback, with a temp data dir and free ports: scripts/lib/etcd.mjs, shared with the benchmark and the demos. */
import * as lib from '../../scripts/lib/etcd.mjs';

export interface EtcdServer {
  endpoint: string;
  /** store URL for a key prefix of its own */
  url: (prefix: string, ttlS?: number) => string;
  stop: () => Promise<void>;
  start: () => Promise<void>;
  remove: () => Promise<void>;
}

export const freePort: () => Promise<number> = lib.freePort;

/** etcd on loopback; inside a network namespace when given (its CLI calls must then run there too). */
export async function startEtcd(netns?: string): Promise<EtcdServer> {
  return lib.startEtcd({ netns });
}
