/**
 * The etcd store keeps the crash-proof invariants through what etcd itself does to leases: an agent that
 * restarts after its lease expired, a lease lost while the agent runs (etcd away longer than the TTL), and a
 * MAC another host took meanwhile, which is reported loudly and never handed out again while it stands.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { cli, FAKE_QEMU, sandbox, type Sandbox, waitFor } from '../helpers/cli.js';
import { startEtcd, type EtcdServer } from '../helpers/etcd.js';
import { checkInvariants, liveQemus } from '../helpers/invariants.js';
import { createNetns, type Netns } from '../helpers/netns.js';

const TTL = 3;
let ns: Netns;
let etcd: EtcdServer;
let sb: Sandbox;
let n = 0;
let agent: { child: ChildProcess; stderr: () => string } | undefined;
let prefix = '';

beforeAll(async () => {
  ns = createNetns(['br0']);
  etcd = await startEtcd(ns.name);
});
afterAll(async () => {
  await etcd?.remove();
  ns.remove();
});
beforeEach(() => {
  n += 1;
  prefix = `reassert-${process.pid}-${n}`;
  sb = sandbox({ UNCLOUD_VM_QEMU: FAKE_QEMU, FAKE_QEMU_QMP: '1', FAKE_QEMU_SLEEP: '600', UNCLOUD_VM_STORE: etcd.url(prefix, TTL), UNCLOUD_VM_HOST: 'h1' });
});
afterEach(() => {
  agent?.child.kill('SIGKILL');
  agent = undefined;
  for (const q of liveQemus(sb.runDir)) process.kill(q.pid, 'SIGKILL');
  sb.cleanup();
});

const run = (args: string[], env: NodeJS.ProcessEnv = {}) => cli(args, { env: { ...sb.env, ...env }, netns: ns.name });
type Row = { mac: string; state: string; host: string; vm: { uuid?: string; name: string } | null; owners: { pid: number }[] };
const leases = async () => JSON.parse((await run(['mac', 'list', '--json'])).stdout) as Row[];
const etcdctl = (...args: string[]) => execFileSync('ip', ['netns', 'exec', ns.name, 'etcdctl', '--endpoints', etcd.endpoint, ...args], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });

function startAgent(): Promise<void> {
  let err = '';
  return new Promise<void>((resolve) => {
    void cli(['agent'], {
      env: sb.env,
      netns: ns.name,
      onSpawn: (c) => {
        agent = { child: c, stderr: () => err };
        c.stderr!.on('data', (d) => (err += d.toString()));
        resolve();
      },
    });
  }).then(() => waitFor('agent up', () => /holds etcd lease/.test(agent!.stderr())).then(() => undefined));
}

async function startVms(names: string[]): Promise<void> {
  for (const name of names) {
    const r = await run(['start', '--name', name, '--accel', 'tcg', '--memory', '64', '--detach']);
    expect(r.code, r.stderr).toBe(0);
  }
}

describe('etcd: running VMs keep their keys', () => {
  it('an agent restarted after its lease expired re-creates the keys of the VMs running here', async () => {
    await startAgent();
    await startVms(['e1', 'e2']);
    expect(await leases()).toHaveLength(2);
    agent!.child.kill('SIGKILL');
    await waitFor('keys expired', async () => (await leases()).length === 0, (TTL + 10) * 1000);
    await startAgent();
    expect(agent!.stderr()).toMatch(/2 running VM lease\(s\) asserted \(2 created again\)/);
    const rows = await leases();
    expect(rows.map((l) => l.state)).toEqual(['live', 'live']);
    expect(checkInvariants({ runDir: sb.runDir, leases: rows }).violations).toEqual([]);
  });

  it('a lease lost while the agent runs (etcd expired it): the agent takes a new one and re-asserts', async () => {
    await startAgent();
    await startVms(['s1']);
    const id = JSON.parse(etcdctl('get', '--print-value-only', `/${prefix}/hosts/h1`).trim()).leaseId as string;
    etcdctl('lease', 'revoke', BigInt(id).toString(16));
    await waitFor('agent re-asserted', () => /lease lost/.test(agent!.stderr()) && /after a lost lease/.test(agent!.stderr()), (TTL + 15) * 1000);
    const rows = await waitFor('key back', async () => {
      const l = await leases();
      return l.length === 1 ? l : undefined;
    });
    expect(checkInvariants({ runDir: sb.runDir, leases: rows }).violations).toEqual([]);
  });

  it('a MAC another host took meanwhile is a conflict, reported loudly, and restored once freed', async () => {
    await startAgent();
    await startVms(['c1']);
    const mac = (await leases())[0]!.mac;
    agent!.child.kill('SIGKILL');
    await waitFor('key expired', async () => (await leases()).length === 0, (TTL + 10) * 1000);
    // Another host claims the address (as `--nic mac=` there would).
    const other = await run(['mac', 'allocate', '--vm', 'intruder'], { UNCLOUD_VM_HOST: 'h2' });
    expect(other.code).toBe(0);
    const key = `/${prefix}/macs/${mac.replaceAll(':', '')}`;
    const theirs = JSON.stringify({ version: 1, mac, vm: { name: 'intruder' }, nic: 0, host: 'h2', owners: [], created: new Date().toISOString() });
    etcdctl('put', key, theirs);
    await startAgent();
    await waitFor('conflict reported', () => new RegExp(`CONFLICT: MAC ${mac} is used by running VM c1 on host h1 but held by VM intruder on host h2`).test(agent!.stderr()));
    const list = await run(['mac', 'list']);
    expect(list.stderr).toMatch(/CONFLICT/);
    expect(list.stdout).toMatch(new RegExp(`${mac}\\s+conflict`));
    // While it stands, no allocation hands it out (after the other host gives it up, too).
    etcdctl('del', key);
    const next = (await run(['mac', 'allocate'])).stdout.trim();
    expect(next).not.toBe(mac);
    // The agent's periodic pass restores the key and clears the conflict.
    await waitFor('key restored', async () => (await leases()).some((l) => l.mac === mac && l.vm?.name === 'c1'), (TTL + 10) * 1000);
    await waitFor('conflict cleared', async () => !/CONFLICT/.test((await run(['mac', 'list'])).stderr), (TTL + 10) * 1000);
  });

  it('a deleted or damaged host key is announced again by the running agent', async () => {
    await startAgent();
    etcdctl('put', `/${prefix}/hosts/h1`, 'junk');
    await waitFor('announced again', () => /key of host h1 was missing or damaged; announced again/.test(agent!.stderr()), (TTL + 10) * 1000);
    expect((await run(['start', '--name', 'a1', '--accel', 'tcg', '--memory', '64', '--detach'])).code).toBe(0);
  });

  it('a second agent for the same host: each says the other announced the host, naming its pid; the VM keeps its key', async () => {
    await startAgent();
    const first = agent!;
    await startVms(['two1']);
    await startAgent();
    const second = agent!;
    try {
      await waitFor('the first agent names the second', () => new RegExp(`another agent announced host h1 \\(pid ${second.child.pid}, started `).test(first.stderr()), (TTL + 10) * 1000);
      expect(first.stderr()).not.toMatch(/missing or damaged/);
      expect(await leases()).toEqual([expect.objectContaining({ vm: expect.objectContaining({ name: 'two1' }), state: 'live' })]);
    } finally {
      first.child.kill('SIGKILL');
    }
  });

  it('etcd away longer than the lease: the agent says each kind of failure once, not every retry, and is back on a new lease after', async () => {
    await startAgent();
    await startVms(['away1']);
    await etcd.stop();
    try {
      await waitFor('lease given up', () => /lease lost/.test(agent!.stderr()), (3 * TTL + 10) * 1000);
      // Several retries (every 0.5 s) while etcd is still away.
      await new Promise((r) => setTimeout(r, 3000));
    } finally {
      await etcd.start();
    }
    await waitFor('back on a new lease', () => /after a lost lease/.test(agent!.stderr()), 30_000);
    const failures = agent!.stderr().split('\n').filter((l) => /failed: /.test(l));
    expect(failures.length).toBeGreaterThan(0);
    expect(failures.length).toBeLessThanOrEqual(3);
    await waitFor('key live', async () => (await leases()).some((l) => l.vm?.name === 'away1' && l.state === 'live'), (TTL + 10) * 1000);
  });

  it('one garbage key under the prefix does not stop the agent', async () => {
    etcdctl('put', `/${prefix}/macs/420000000077`, 'garbage');
    await startAgent();
    expect(agent!.child.exitCode).toBeNull();
    const list = await run(['mac', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/420000000077\s+damaged/);
  });
});
