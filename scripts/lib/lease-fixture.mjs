// Many held leases written straight into a store, as the store itself writes them: the fast fixture behind the
// 200,000-lease tests (test/store/scale.test.ts) and the scaling rows of the benchmark.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Lease i of a fixture: MAC base + first + i * stride, owned by `owners(i)` (none: a manual allocation). */
function leaseAt(i, { base, first = 0x100000, stride = 1, host = 'fixture', owners = () => [] }) {
  const hex = (base + first + i * stride).toString(16).padStart(12, '0');
  const mac = hex.match(/../g).join(':');
  const vm = owners(i).length > 0 ? { uuid: `00000000-0000-4000-8000-${hex}`, name: `fx-${hex}` } : null;
  return { hex, lease: { version: 1, mac, vm, nic: vm ? 0 : null, host, owners: owners(i), created: new Date(0).toISOString() } };
}

/**
 * `count` lease files in a file store's state dir, with what the store keeps beside them: their host index
 * entries (hosts/<host>/<hex>, checked in this boot) and, with `prefix` ("42:00:00"), the held count under it.
 */
export function writeFileLeases(stateDir, count, opts) {
  const dir = join(stateDir, 'leases');
  const hostDir = join(stateDir, 'hosts', opts.host ?? 'fixture');
  for (const d of [dir, hostDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
  for (let i = 0; i < count; i++) {
    const { hex, lease } = leaseAt(i, opts);
    writeFileSync(join(dir, `${hex}.json`), `${JSON.stringify(lease)}\n`, { mode: 0o600 });
    writeFileSync(join(hostDir, hex), '', { mode: 0o600 });
  }
  writeFileSync(join(stateDir, 'hosts', '.complete'), readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'), { mode: 0o600 });
  if (opts.prefix) {
    const poolPath = join(stateDir, 'pool.json');
    const pool = existsSync(poolPath) ? JSON.parse(readFileSync(poolPath, 'utf8')) : { version: 1, cursors: {} };
    const p = opts.prefix.replaceAll(':', '');
    pool.held = { ...pool.held, [p]: (pool.held?.[p] ?? 0) + count };
    writeFileSync(poolPath, `${JSON.stringify(pool)}\n`, { mode: 0o600 });
  }
}

/**
 * `count` lease keys and their host index keys under an etcd store's prefix ("/name"), 50 leases per transaction,
 * 8 transactions at a time, and their count (a base per counter group, as the store's count build writes it,
 * src/store/etcd-held-count.ts). The prefix must be new: the count is written, not added to.
 */
export async function writeEtcdLeases(endpoint, prefix, count, opts) {
  const { Etcd3 } = await import('etcd3');
  const client = new Etcd3({ hosts: endpoint });
  try {
    const batches = [];
    const counts = new Map();
    for (let i = 0; i < count; i += 50) batches.push(i);
    const worker = async () => {
      for (let b = batches.shift(); b !== undefined; b = batches.shift()) {
        const puts = [];
        for (let i = b; i < Math.min(b + 50, count); i++) {
          const { hex, lease } = leaseAt(i, opts);
          puts.push(client.put(`${prefix}/macs/${hex}`).value(JSON.stringify(lease)));
          puts.push(client.put(`${prefix}/held-by/${lease.host}/${hex}`).value(''));
          const id = `${hex.slice(0, 6)}/${lease.host}/0`;
          counts.set(id, (counts.get(id) ?? 0) + 1);
        }
        await client.if(`${prefix}/fixture`, 'Create', '!=', -1).then(...puts).commit();
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    for (const [id, n] of counts) await client.put(`${prefix}/counts/${id}/base`).value(String(n));
    await client.put(`${prefix}/counts-complete`).value('1');
    await client.put(`${prefix}/held-by-index`).value('1');
  } finally {
    client.close();
  }
}
