/**
 * The --store setting: "file" (the embedded default) or etcd://host:port[,host:port…][/prefix][?ttl=30]
 * (etcds:// for TLS). Pure parsing and validation.
 */
import { printable, usageError } from './errors.js';

export interface EtcdTarget {
  kind: 'etcd';
  /** Endpoints as the etcd3 client takes them (http:// or https://). */
  endpoints: string[];
  /** Key prefix every uncloud-vm key lives under. */
  prefix: string;
  tls: boolean;
  /** Seconds a host's ephemeral leases outlive the last keep-alive. */
  ttlS: number;
}

export type StoreTarget = { kind: 'file' } | EtcdTarget;

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/;
const PREFIX = /^(\/[A-Za-z0-9._-]+)+$/;

export function parseStore(text: string): StoreTarget {
  if (text === 'file') return { kind: 'file' };
  const m = /^(etcds?):\/\/([^/?]+)(\/[^?]*)?(\?.*)?$/.exec(text);
  const bad = (why: string) =>
    usageError(`invalid store '${printable(text)}': ${why}; expected 'file' or etcd://host:port[,host:port…][/prefix][?ttl=seconds]`);
  if (!m) throw bad('unknown form');
  const tls = m[1] === 'etcds';
  const endpoints = m[2]!.split(',').map((hp) => {
    const h = HOST_PORT.exec(hp);
    if (!h || Number(h[2]) < 1 || Number(h[2]) > 65535) throw bad(`bad endpoint '${printable(hp)}'`);
    return `${tls ? 'https' : 'http'}://${hp}`;
  });
  const prefix = m[3] && m[3] !== '/' ? m[3].replace(/\/+$/, '') : '/uncloud-vm';
  if (!PREFIX.test(prefix)) throw bad(`bad key prefix '${printable(prefix)}'`);
  let ttlS = 30;
  if (m[4]) {
    for (const kv of m[4].slice(1).split('&')) {
      const [k, v] = kv.split('=');
      if (k === 'ttl' && v !== undefined && /^[0-9]+$/.test(v) && Number(v) >= 2 && Number(v) <= 3600) ttlS = Number(v);
      else throw bad(`bad option '${printable(kv)}' (allowed: ttl=2..3600)`);
    }
  }
  return { kind: 'etcd', endpoints, prefix, tls, ttlS };
}
