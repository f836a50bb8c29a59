/** The etcd pool across hosts: concurrent hosts, a host that dies, and etcd going away and coming back. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cli as cliRaw, FAKE_QEMU, ROOT, sandbox, type Sandbox, waitFor } from '../helpers/cli.js';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';
import { createNetns, type Netns } from '../helpers/netns.js';

let etcd: EtcdServer;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => etcd?.remove());

function host(url: string, id: string, count: number): { child: ChildProcess; macs: Promise<string[]> } {
  const child = spawn(process.execPath, [join(ROOT, 'test/fixtures/etcd-host.mjs'), url, id, String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const macs = new Promise<string[]>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const lines = out.split('\n').filter(Boolean);
      if (lines.length >= count) resolve(lines);
    });
    child.once('exit', (code) => reject(new Error(`host ${id} exited with ${code}`)));
  });
  return { child, macs };
}

describe('etcd store across hosts', () => {
  it('two hosts allocating 64 each at once get 128 distinct MACs; a killed host loses its leases after the TTL, the other keeps them', async () => {
    const url = etcd.url('cluster-a', 3);
    const a = host(url, 'host-a', 64);
    const b = host(url, 'host-b', 64);
    try {
      const [ma, mb] = await Promise.all([a.macs, b.macs]);
      const all = [...ma, ...mb];
      expect(all).toHaveLength(128);
      expect(new Set(all).size).toBe(128);
      const sb = sandbox({ UNCLOUD_VM_STORE: url, UNCLOUD_VM_HOST: 'host-c' });
      const list = async () => JSON.parse((await cli(['mac', 'list', '--json'], { env: sb.env })).stdout) as { mac: string; host: string; state: string }[];
      const before = await list();
      expect(before).toHaveLength(128);
      expect(before.every((l) => l.state === 'remote')).toBe(true);
      const pool = JSON.parse((await cli(['mac', 'pool', '--json'], { env: sb.env })).stdout);
      expect(pool).toMatchObject({ held: 128, byHost: { 'host-a': 64, 'host-b': 64 } });
      // gc on a third host frees nothing of live hosts.
      expect((await cli(['gc'], { env: sb.env })).stdout).toBe('');
      expect(await list()).toHaveLength(128);

      a.child.kill('SIGKILL');
      await waitFor('host-a leases expired', async () => (await list()).every((l) => l.host === 'host-b'), 15_000);
      const after = await list();
      expect(after.map((l) => l.mac).sort()).toEqual([...mb].sort());
      sb.cleanup();
    } finally {
      a.child.kill('SIGKILL');
      b.child.kill('SIGKILL');
    }
  });
});

describe('the host agent', () => {
  it("keeps a host's VM leases alive after the allocating process is gone; when the agent dies they expire", async () => {
    const url = etcd.url('cluster-d', 3);
    const sb = sandbox({ UNCLOUD_VM_STORE: url, UNCLOUD_VM_HOST: 'host-d' });
    const list = async () => JSON.parse((await cli(['mac', 'list', '--json'], { env: sb.env })).stdout) as { mac: string; host: string; state: string }[];
    // Without an agent, a process that needs one is refused.
    const noAgent = spawn(process.execPath, [join(ROOT, 'test/fixtures/etcd-host.mjs'), url, 'host-d', '1'], { env: { ...process.env, REQUIRE_AGENT: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    noAgent.stderr!.on('data', (d) => (err += d));
    await new Promise((r) => noAgent.once('exit', r));
    expect(err).toMatch(/no 'uncloud-vm agent' runs for host host-d/);

    const agent = spawn(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'agent'], { env: sb.env, stdio: ['ignore', 'ignore', 'pipe'] });
    let agentLog = '';
    agent.stderr!.on('data', (d) => (agentLog += d));
    try {
      await waitFor('agent up', () => /holds etcd lease/.test(agentLog), 10_000);
      const h = spawn(process.execPath, [join(ROOT, 'test/fixtures/etcd-host.mjs'), url, 'host-d', '3'], { env: { ...process.env, REQUIRE_AGENT: '1' }, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise((r) => h.stdout!.once('data', r));
      h.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 5000)); // beyond the 3 s TTL
      const held = await list();
      expect(held).toHaveLength(3);
      // Their owner is gone: gc on this host frees them (and only this host's).
      expect(held.every((l) => l.state === 'stale')).toBe(true);
      const again = spawn(process.execPath, [join(ROOT, 'test/fixtures/etcd-host.mjs'), url, 'host-d', '2'], { env: { ...process.env, REQUIRE_AGENT: '1' }, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise((r) => again.stdout!.once('data', r));
      expect((await cli(['gc'], { env: sb.env })).stdout.trim().split('\n')).toHaveLength(3);
      expect(await list()).toHaveLength(2);
      agent.kill('SIGKILL');
      await waitFor('leases expired with the agent', async () => (await list()).length === 0, 15_000);
      again.kill('SIGKILL');
    } finally {
      agent.kill('SIGKILL');
      sb.cleanup();
    }
  });
});

describe('etcd going away', () => {
  // etcd, the launcher and every CLI call share the namespace: its loopback is theirs alone.
  let ns: Netns;
  let sb: Sandbox;
  let etcd: EtcdServer;
  const cli = (args: string[], opts: Parameters<typeof cliRaw>[1] = {}) => cliRaw(args, { ...opts, netns: ns.name });
  beforeAll(async () => {
    ns = createNetns(['br0']);
    etcd = await startEtcd(ns.name);
  });
  afterAll(async () => {
    await etcd?.remove();
    ns.remove();
    sb?.cleanup();
  });

  /** A foreground VM (fake qemu sleeping `sleepS`) on the etcd store under `prefix` with lease TTL `ttlS`, once its lease is there. */
  async function foregroundVm(name: string, prefix: string, ttlS: number, sleepS: string) {
    sb = sandbox({ UNCLOUD_VM_STORE: etcd.url(prefix, ttlS), UNCLOUD_VM_QEMU: FAKE_QEMU, FAKE_QEMU_SLEEP: sleepS });
    let err = '';
    const run = cli(['start', '--name', name, '--accel', 'tcg', '--memory', '64'], { env: sb.env, netns: ns.name, onSpawn: (c) => c.stderr!.on('data', (d) => (err += d)) });
    const list = async () => JSON.parse((await cli(['mac', 'list', '--json'], { env: sb.env })).stdout) as { mac: string; state: string }[];
    await waitFor('lease', async () => (await list().catch(() => [])).length === 1, 20_000);
    const [held] = await list();
    return { run, list, held: held!, stderr: () => err };
  }

  it('etcd stopped: start fails naming the endpoints and starts no qemu; etcd back: allocation works again', async () => {
    const log = join('/tmp', `uncloud-vm-fakeqemu-${process.pid}.log`);
    sb = sandbox({ UNCLOUD_VM_STORE: etcd.url('cluster-b'), UNCLOUD_VM_QEMU: FAKE_QEMU, FAKE_QEMU_LOG: log });
    await etcd.stop();
    try {
      const t0 = Date.now();
      const r = await cli(['start', '--accel', 'tcg', '--memory', '64'], { env: sb.env, netns: ns.name });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^uncloud-vm: etcd store ${etcd.endpoint.replaceAll('.', '\\.')}/cluster-b: .* failed`, 'm'));
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(existsSync(log)).toBe(false);
      expect(Date.now() - t0).toBeLessThan(30_000);
      const m = await cli(['mac', 'allocate'], { env: sb.env });
      expect(m.code).toBe(1);
    } finally {
      await etcd.start();
    }
    const m = await cli(['mac', 'allocate'], { env: sb.env });
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout.trim()).toMatch(/^42:00:00:00:00:01$/);
    const r = await cli(['start', '--accel', 'tcg', '--memory', '64'], { env: sb.env, netns: ns.name });
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(log)).toBe(true);
    const list = JSON.parse((await cli(['mac', 'list', '--json'], { env: sb.env })).stdout);
    expect(list).toHaveLength(1);
  });

  it('a foreground VM survives an etcd restart: the VM keeps running, the keep-alive resumes, the lease is still held', async () => {
    const { run, list, held, stderr } = await foregroundVm('keep', 'cluster-c', 4, '30');
    await etcd.stop();
    await new Promise((r) => setTimeout(r, 2000));
    await etcd.start();
    // Longer than the TTL: the lease survived because the keep-alive resumed.
    await new Promise((r) => setTimeout(r, 6000));
    expect(await list()).toEqual([expect.objectContaining({ mac: held.mac, state: 'live' })]);
    // Nobody else gets that address meanwhile.
    const other = await cli(['mac', 'allocate'], { env: sb.env });
    expect(other.stdout.trim()).not.toBe(held.mac);
    // The outage is told once and its end once, not a line per keep-alive retry (every 0.1 s).
    expect(stderr().match(/keep-alive failed/g)).toHaveLength(1);
    expect(stderr().match(/keep-alive resumed/g)).toHaveLength(1);
    const stop = await cli(['stop', 'keep', '--force'], { env: sb.env, netns: ns.name });
    expect(stop.code, stop.stderr).toBe(0);
    const r = await run;
    expect(r.code, r.stderr).toBe(0);
    expect((await list()).map((l) => l.mac)).not.toContain(held.mac);
  });

  it('a foreground VM whose lease is lost while etcd is still away takes a new one once etcd is back: the key stands', async () => {
    const ttl = 3;
    const { run, list, held, stderr } = await foregroundVm('away', 'cluster-e', ttl, '60');
    await etcd.stop();
    // Away longer than twice the TTL: the client gives the lease up while etcd cannot be asked for a new one.
    await waitFor('lease given up', () => /lease lost/.test(stderr()), (3 * ttl + 10) * 1000);
    await new Promise((r) => setTimeout(r, 1000));
    await etcd.start();
    await waitFor('leases re-asserted', () => /leases re-asserted/.test(stderr()), 20_000);
    // Longer than the TTL: a key left on the lost lease would have expired with it.
    await new Promise((r) => setTimeout(r, (ttl + 2) * 1000));
    expect(await list()).toEqual([expect.objectContaining({ mac: held.mac, state: 'live' })]);
    const stop = await cli(['stop', 'away', '--force'], { env: sb.env, netns: ns.name });
    expect(stop.code, stop.stderr).toBe(0);
    expect((await run).code).toBe(0);
  });
});
