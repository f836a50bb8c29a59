/**
 * The etcd store's connection: the client, the key layout under the store's prefix, and the one wrapper every
 * etcd call goes through (a failure becomes one clear error naming the endpoints).
 *
 *   <prefix>/macs/<12 hex>      one key per held address (the Lease record as JSON)
 *   <prefix>/cursors/<pool>     the shared rotating cursor of a pool
 *   <prefix>/vms/<name>         what a named VM had last time (UUID, MAC per NIC); holds no address
 *   <prefix>/hosts/<host>       the host agent's etcd lease id, attached to that lease
 *   <prefix>/conflicts/<12 hex> a MAC a running VM uses while another holds its key (etcd-host-lease.ts)
 *   <prefix>/held-by/<host>/<12 hex>  the host index: an empty key per lease of <host>, written and deleted in the
 *                               transaction that writes or deletes the lease, on no etcd lease (etcd-host-index.ts)
 *   <prefix>/held-by-index      there since every lease has its index key
 *   <prefix>/counts/<6 hex>/<host>/<etcd lease>/…  the held count (etcd-held-count.ts), written with the leases
 *   <prefix>/counts-complete    there since every lease is counted
 */
import { Etcd3 } from 'etcd3';
import { UncloudError } from '../core/errors.js';
import type { Pool } from '../core/mac.js';
import type { EtcdTarget } from '../core/store-url.js';
import type { EtcdAccess } from './etcd-host-lease.js';
import { Exhausted } from './policy.js';

export interface EtcdConnOptions {
  target: EtcdTarget;
  host: string;
  auth?: { username: string; password: string };
  credentials?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer };
}

const CALL_DEADLINE_MS = 5000;

/** The 12 hex digits of a MAC, as its keys name it. */
export const macHex = (mac: string): string => mac.replaceAll(':', '');

export class EtcdConn implements EtcdAccess {
  readonly client: Etcd3;
  readonly where: string;
  readonly host: string;
  /** The key prefix every uncloud-vm key lives under. */
  readonly prefix: string;
  readonly ttlS: number;

  constructor(opts: EtcdConnOptions) {
    const t = opts.target;
    this.where = `etcd store ${t.endpoints.map((e) => e.replace(/^https?:\/\//, '')).join(',')}${t.prefix}`;
    this.prefix = t.prefix;
    this.host = opts.host;
    this.ttlS = t.ttlS;
    this.client = new Etcd3({
      hosts: t.endpoints,
      dialTimeout: 3000,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
      ...(opts.auth ? { auth: opts.auth } : {}),
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
    });
  }

  macKey(mac: string): string {
    return `${this.prefix}/macs/${macHex(mac)}`;
  }
  cursorKey(pool: Pool): string {
    return `${this.prefix}/cursors/${pool.prefix}`;
  }
  vmKey(name: string): string {
    return `${this.prefix}/vms/${name}`;
  }
  hostKey(host = this.host): string {
    return `${this.prefix}/hosts/${host}`;
  }
  conflictKey(mac: string): string {
    return `${this.prefix}/conflicts/${macHex(mac)}`;
  }
  /** The host index key of a lease of `host`; see etcd-host-index.ts. */
  indexKey(host: string, mac: string): string {
    return `${this.indexPrefix(host)}${macHex(mac)}`;
  }
  indexPrefix(host = this.host): string {
    return `${this.prefix}/held-by/${host}/`;
  }

  /** Every etcd call goes through here: a failure becomes one clear error naming the endpoints. */
  async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof UncloudError || err instanceof Exhausted) throw err;
      const msg = (err as Error).message.split('\n')[0] ?? '';
      const cause = /Last error: (?:Error: )?(.+?)(?:\.? - |\. Resolution note|$)/.exec(msg)?.[1]?.trim();
      if (/UNAVAILABLE|DEADLINE_EXCEEDED|ECONNREFUSED|GRPCConnectFailed|circuit/i.test(msg)) {
        throw new UncloudError(
          'ETCD_UNAVAILABLE',
          `${this.where}: ${what} failed: cannot reach etcd${cause ? ` (${cause})` : ''}; check that etcd runs and the endpoints are right`,
        );
      }
      throw new UncloudError('ETCD_FAILED', `${this.where}: ${what} failed: ${msg}`);
    }
  }

  close(): void {
    this.client.close();
  }
}

/** The first key after every key that starts with `prefix` (etcd's range end for a prefix). */
export function prefixEnd(prefix: string): string {
  return `${prefix.slice(0, -1)}${String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)}`;
}
