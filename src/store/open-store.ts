/** Pick the store a setting names: "file" (the embedded default) or etcd://host:port[,host:port…][/prefix]. */
import { readFileSync } from 'node:fs';
import { usageError } from '../core/errors.js';
import { parseStore } from '../core/store-url.js';
import { FileStore } from './file-store.js';
import type { HostAgent } from './etcd-host-lease.js';
import type { Store } from './store.js';

export interface StoreSettings {
  store: string;
  stateDir: string;
  host: string;
}

export interface OpenOptions {
  /** etcd: refuse leases for running VMs unless this host's agent runs (units, detached VMs). */
  requireAgent?: boolean;
  /** etcd: told when keeping this process's own lease alive runs into trouble. */
  onLeaseTrouble?: (msg: string) => void;
  env?: NodeJS.ProcessEnv;
}

function readPem(env: NodeJS.ProcessEnv, name: string): Buffer | undefined {
  const path = env[name];
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch (err) {
    throw usageError(`${name}=${path}: ${(err as Error).message}`);
  }
}

export async function openStore(settings: StoreSettings, opts: OpenOptions = {}): Promise<Store> {
  const target = parseStore(settings.store);
  if (target.kind === 'file') return new FileStore({ dir: settings.stateDir, host: settings.host });
  return openEtcd(settings, target, opts);
}

/** The etcd store's host-agent side (etcd-host-lease.ts), for `uncloud-vm agent`. */
export async function openHostAgent(settings: StoreSettings, opts: OpenOptions = {}): Promise<HostAgent> {
  const target = parseStore(settings.store);
  if (target.kind !== 'etcd') {
    throw usageError('the agent is for the etcd store: pass --store etcd://host:port (the file store needs no agent)');
  }
  return openEtcd(settings, target, opts);
}

async function openEtcd(settings: StoreSettings, target: Extract<ReturnType<typeof parseStore>, { kind: 'etcd' }>, opts: OpenOptions) {
  const env = opts.env ?? process.env;
  const { EtcdStore } = await import('./etcd-store.js');
  const user = env.UNCLOUD_VM_ETCD_USER;
  const ca = readPem(env, 'UNCLOUD_VM_ETCD_CA');
  const cert = readPem(env, 'UNCLOUD_VM_ETCD_CERT');
  const key = readPem(env, 'UNCLOUD_VM_ETCD_KEY');
  return new EtcdStore({
    target,
    host: settings.host,
    ...(user ? { auth: { username: user, password: env.UNCLOUD_VM_ETCD_PASSWORD ?? '' } } : {}),
    ...(ca ? { credentials: { rootCertificate: ca, ...(key ? { privateKey: key } : {}), ...(cert ? { certChain: cert } : {}) } } : {}),
    ...(opts.requireAgent ? { requireAgent: true } : {}),
    ...(opts.onLeaseTrouble ? { onLeaseTrouble: opts.onLeaseTrouble } : {}),
  });
}
