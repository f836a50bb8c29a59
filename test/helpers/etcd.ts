/** A real etcd (Debian's etcd-server) on loopback, with a temp data dir and free ports: scripts/lib/etcd.mjs, shared with the benchmark and the demos. */
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll } from 'vitest';
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

/** etcd for a test file, with a plain client beside it: started before its tests, removed after them. */
export function useEtcd(): { server: EtcdServer; raw: Etcd3 } {
  const ctx = {} as { server: EtcdServer; raw: Etcd3 };
  beforeAll(async () => {
    ctx.server = await startEtcd();
    ctx.raw = new Etcd3({ hosts: ctx.server.endpoint });
  });
  afterAll(async () => {
    ctx.raw?.close();
    await ctx.server?.remove();
  });
  return ctx;
}
