/**
 * Crash consistency: workers allocate and release in a loop while workers are SIGKILLed at random instants,
 * hundreds of times. Afterwards the state parses, no address is believed held by two live workers, every
 * live worker's addresses are in the store under its name, the rest is freed by one gc, the cursor is sane.
 * Same for the etcd store.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePool } from '../../src/core/mac.js';
import { parseStore, type EtcdTarget } from '../../src/core/store-url.js';
import { EtcdStore } from '../../src/store/etcd-store.js';
import { FileStore } from '../../src/store/file-store.js';
import type { Store } from '../../src/store/store.js';
import { ROOT } from '../helpers/cli.js';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';

interface Worker {
  child: ChildProcess;
  held: Set<string>;
  killed: boolean;
}

function spawnWorker(where: string): Worker {
  const child = spawn(process.execPath, [join(ROOT, 'test/fixtures/torture-worker.mjs'), where], { stdio: ['ignore', 'pipe', 'ignore'] });
  const w: Worker = { child, held: new Set(), killed: false };
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const [op, mac] = buf.slice(0, nl).split(' ');
      buf = buf.slice(nl + 1);
      if (op === 'A') w.held.add(mac!);
      else w.held.delete(mac!);
    }
  });
  return w;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Run the torture; returns the number of kills. */
async function torture(where: string, store: () => Store, opts: { workers: number; kills: number; maxMs: number }) {
  const pool = parsePool('42:00:00:00');
  const all: Worker[] = [];
  const live: Worker[] = [];
  for (let i = 0; i < opts.workers; i++) live.push(spawnWorker(where));
  all.push(...live);
  let kills = 0;
  const t0 = Date.now();
  while (kills < opts.kills && Date.now() - t0 < opts.maxMs) {
    await sleep(20 + Math.random() * 80);
    const i = Math.floor(Math.random() * live.length);
    const victim = live[i]!;
    victim.child.kill('SIGKILL');
    victim.killed = true;
    kills += 1;
    const w = spawnWorker(where);
    all.push(w);
    live[i] = w;
  }
  // Let the survivors get going (a fresh worker holds nothing yet; on a loaded machine starting one takes
  // seconds), then freeze them mid-loop and inspect.
  const deadline = Date.now() + 60_000;
  while (!live.every((w) => w.held.size > 0) && Date.now() < deadline) await sleep(100);
  await sleep(500);
  for (const w of live) w.child.kill('SIGSTOP');
  await sleep(300);
  const s = store();
  const { leases, damaged } = await s.list();
  expect(damaged).toEqual([]); // every record parses: a kill never leaves a half-written one
  const status = await s.status(pool);
  expect(status.cursor.startsWith('42:00:00:00:')).toBe(true);
  // The count the store keeps is exact after every kill, and its host index hides no lease.
  expect(status.held).toBe(leases.length);
  expect((await s.listHost()).leases).toEqual(leases);
  expect(new Set(leases.map((l) => l.mac)).size).toBe(leases.length);
  const byMac = new Map(leases.map((l) => [l.mac, l]));
  const believed = new Map<string, number>();
  for (const w of live) {
    for (const mac of w.held) {
      expect(believed.has(mac), `${mac} believed held by two live workers`).toBe(false);
      believed.set(mac, w.child.pid!);
    }
    const mine = leases.filter((l) => l.owners.some((o) => o.pid === w.child.pid)).map((l) => l.mac);
    // What it believes it holds is in the store as its own, give or take the one operation in flight.
    const missing = [...w.held].filter((m) => byMac.get(m)?.owners[0]?.pid !== w.child.pid);
    const extra = mine.filter((m) => !w.held.has(m));
    expect(missing.length, `worker ${w.child.pid} lost ${missing}`).toBeLessThanOrEqual(1);
    expect(extra.length, `worker ${w.child.pid} has unreported ${extra}`).toBeLessThanOrEqual(1);
  }
  const livePids = new Set(live.map((w) => w.child.pid));
  const dead = leases.filter((l) => !l.owners.some((o) => livePids.has(o.pid)));
  const liveHeld = leases.length - dead.length;
  expect(liveHeld, 'live workers hold addresses at the freeze').toBeGreaterThan(0);
  const freed = await s.gc();
  expect(freed.map((l) => l.mac).sort()).toEqual(dead.map((l) => l.mac).sort());
  expect((await s.list()).leases.every((l) => l.owners.some((o) => livePids.has(o.pid)))).toBe(true);
  expect((await s.status(pool)).held).toBe(liveHeld);
  for (const w of live) {
    w.child.kill('SIGKILL');
    w.child.kill('SIGCONT');
  }
  await Promise.all(all.map((w) => (w.child.exitCode !== null || w.child.signalCode !== null ? undefined : new Promise((r) => w.child.once('exit', r)))));
  await s.gc();
  expect((await s.list()).leases).toEqual([]);
  expect((await s.status(pool)).held).toBe(0);
  expect((await s.listHost()).leases).toEqual([]);
  await s.close();
  return { kills, leasesAtFreeze: leases.length, liveHeld, freedByGc: freed.length };
}

describe('crash consistency under random SIGKILLs', () => {
  it('file store: hundreds of kills, nothing lost or doubled, one gc cleans up', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-torture-'));
    try {
      const state = join(dir, 'state');
      const r = await torture(`file:${state}`, () => new FileStore({ dir: state }), { workers: 6, kills: 300, maxMs: 60_000 });
      console.log(`file store torture: ${r.kills} kills; at the freeze ${r.leasesAtFreeze} leases, ${r.liveHeld} of live workers, ${r.freedByGc} freed by one gc`);
      expect(r.kills).toBeGreaterThanOrEqual(200);
      JSON.parse(readFileSync(join(state, 'pool.json'), 'utf8'));
      // Nor is a temp file of a killed writer left after that gc, wherever it was writing.
      const temps = (readdirSync(state, { recursive: true }) as string[]).filter((p) => basename(p).startsWith('.tmp-'));
      expect(temps).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);

  describe('etcd store', () => {
    let etcd: EtcdServer;
    beforeAll(async () => {
      etcd = await startEtcd();
    });
    afterAll(async () => etcd?.remove());

    it('hundreds of kills, nothing lost or doubled, one gc cleans up', async () => {
      const url = etcd.url('torture', 60);
      const target = parseStore(url) as EtcdTarget;
      const r = await torture(url, () => new EtcdStore({ target, host: 'torture' }), { workers: 6, kills: 200, maxMs: 45_000 });
      console.log(`etcd store torture: ${r.kills} kills; at the freeze ${r.leasesAtFreeze} leases, ${r.liveHeld} of live workers, ${r.freedByGc} freed by one gc`);
      expect(r.kills).toBeGreaterThanOrEqual(150);
    }, 180_000);
  });
});
