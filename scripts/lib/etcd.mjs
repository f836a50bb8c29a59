// etcd (Debian's etcd-server) for the tests, the benchmark and the demos: one member on loopback with free
// ports, or a member of a cluster on given URLs, optionally inside a network namespace.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const inNs = (netns, cmd, args) => (netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, args]);

/** Whether the members at these endpoints (host:port, comma-separated) answer a health check. */
export function etcdHealthy(endpoints, netns) {
  const [cmd, args] = inNs(netns, 'etcdctl', ['--endpoints', endpoints, '--dial-timeout', '1s', '--command-timeout', '2s', 'endpoint', 'health']);
  return spawnSync(cmd, args, { env: { ...process.env, ETCDCTL_API: '3' }, stdio: 'ignore' }).status === 0;
}

async function untilHealthy(endpoints, netns, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!etcdHealthy(endpoints, netns)) {
    if (Date.now() > deadline) throw new Error(`etcd at ${endpoints} not healthy within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * One etcd member. host is the address it listens on (an IPv6 one is bracketed in URLs); cluster is the
 * --initial-cluster value (default: this member alone). start() resolves once it runs (and, unless
 * waitHealthy is false, answers a health check: a cluster member cannot until a quorum runs).
 */
export function etcdMember({ name, host = '127.0.0.1', clientPort, peerPort, cluster, netns, dataDir }) {
  const h = host.includes(':') ? `[${host}]` : host;
  const endpoint = `${h}:${clientPort}`;
  const peerUrl = `http://${h}:${peerPort}`;
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'uncloud-vm-etcd-'));
  let proc;
  const member = {
    name,
    endpoint,
    peerUrl,
    dir,
    pid: () => proc?.pid,
    running: () => proc !== undefined && proc.exitCode === null && proc.signalCode === null,
    start: async ({ waitHealthy = true, timeoutMs = 30_000 } = {}) => {
      const [cmd, args] = inNs(netns, 'etcd', [
        '--name', name, '--data-dir', join(dir, 'data'),
        '--listen-client-urls', `http://${endpoint}`, '--advertise-client-urls', `http://${endpoint}`,
        '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
        '--initial-cluster', cluster ?? `${name}=${peerUrl}`, '--initial-cluster-state', 'new',
        '--log-level', 'error',
      ]);
      proc = spawn(cmd, args, { stdio: 'ignore' });
      if (waitHealthy) await untilHealthy(endpoint, netns, timeoutMs);
    },
    /** SIGTERM (default) or SIGKILL; resolves when it has exited. */
    stop: async (signal = 'SIGTERM') => {
      if (!member.running()) return;
      const p = proc;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill(signal);
      await exited;
    },
    remove: async () => {
      await member.stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return member;
}

/** A one-member etcd on loopback (or inside a namespace's loopback), on free ports. */
export async function startEtcd({ netns } = {}) {
  const m = etcdMember({ name: 'test', clientPort: await freePort(), peerPort: await freePort(), netns });
  await m.start();
  return {
    endpoint: m.endpoint,
    pid: () => m.pid(),
    url: (prefix, ttlS) => `etcd://${m.endpoint}/${prefix}${ttlS ? `?ttl=${ttlS}` : ''}`,
    stop: () => m.stop(),
    start: () => m.start(),
    remove: () => m.remove(),
  };
}
