// A small uncloud on one machine, for the cluster tests and `npm run demo:cluster`: an underlay (a bridge in a
// namespace of its own, IPv6 fd00::/64), a three-member etcd cluster with each member in its own namespace
// ("etcd hosts", fd00::e1..e3), and hypervisor namespaces (fd00::1, fd00::2, …) whose uplink is called
// `underlay`. Each hypervisor runs the built uncloud-vm (its own state and run dirs, host name h<i>) and its
// own `uncloud-vm agent`. Needs root. Everything lives in namespaces named <tag>-*; remove() takes it all down.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { etcdHealthy, etcdMember } from './etcd.mjs';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The installed command: bin/uncloud-vm.cjs runs the one-file build with its code cache. */
export const BIN = join(ROOT, 'bin/uncloud-vm.cjs');
const CLIENT_PORT = 2379;
const PEER_PORT = 2380;

const ip = (...args) => execFileSync('ip', args, { encoding: 'utf8' });
const quiet = (fn) => {
  try {
    return fn();
  } catch {
    return undefined;
  }
};

/** SIGKILL every process in a namespace. */
export function killNamespace(ns) {
  const pids = quiet(() => execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }))?.split('\n').filter(Boolean) ?? [];
  for (const pid of pids) quiet(() => process.kill(Number(pid), 'SIGKILL'));
  return pids.length;
}

/** Run the built CLI (inside a namespace when given) and collect its output. */
export function runCli(args, { env = process.env, netns, onSpawn, cwd } = {}) {
  const [cmd, argv] = netns ? ['ip', ['netns', 'exec', netns, process.execPath, BIN, ...args]] : [process.execPath, [BIN, ...args]];
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, argv, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
    onSpawn?.(child);
  });
}

export async function until(what, probe, timeoutMs = 20_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Start the cluster. tag: prefix of every namespace name (unique per run); hypervisors: how many; ttlS: the
 * host lease TTL in the store URL; env: extra environment for every CLI call (e.g. UNCLOUD_VM_QEMU).
 */
export async function startCluster({ tag, hypervisors = 2, ttlS = 30, keyPrefix = 'uncloud-vm', env = {} }) {
  const base = mkdtempSync(join(tmpdir(), `${tag}-`));
  const namespaces = [];
  const addNs = (name) => {
    ip('netns', 'add', name);
    namespaces.push(name);
    ip('-n', name, 'link', 'set', 'lo', 'up');
    return name;
  };
  const underlayNs = `${tag}-u`;
  const cluster = {
    tag,
    base,
    underlayNs,
    members: [],
    hosts: [],
    endpoints: [],
    url: '',
    /** etcdctl against the cluster, run from the first live member's namespace. */
    etcdctl: (...args) => {
      const m = cluster.members.find((x) => x.running()) ?? cluster.members[0];
      return execFileSync('ip', ['netns', 'exec', m.ns, 'etcdctl', '--endpoints', cluster.endpoints.join(','), '--dial-timeout', '2s', '--command-timeout', '4s', ...args], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
      });
    },
    remove: async () => {
      for (const h of cluster.hosts) h.kill();
      for (const m of cluster.members) await m.remove();
      for (const ns of namespaces.reverse()) {
        killNamespace(ns);
        quiet(() => ip('netns', 'del', ns));
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
  try {
    addNs(underlayNs);
    ip('-n', underlayNs, 'link', 'add', 'ul', 'type', 'bridge', 'mcast_snooping', '0');
    ip('-n', underlayNs, 'link', 'set', 'ul', 'up');
    /** A namespace on the underlay: veth <port> in the underlay bridge, `underlay` with addr in the namespace. */
    const attach = (ns, port, addr) => {
      ip('link', 'add', port, 'netns', underlayNs, 'type', 'veth', 'peer', 'name', 'underlay', 'netns', ns);
      ip('-n', underlayNs, 'link', 'set', port, 'master', 'ul', 'up');
      ip('-n', ns, 'addr', 'add', `${addr}/64`, 'dev', 'underlay', 'nodad');
      ip('-n', ns, 'link', 'set', 'underlay', 'up');
    };

    const peers = [1, 2, 3].map((i) => ({ name: `e${i}`, addr: `fd00::e${i}` }));
    const initial = peers.map((p) => `${p.name}=http://[${p.addr}]:${PEER_PORT}`).join(',');
    for (const p of peers) {
      const ns = addNs(`${tag}-${p.name}`);
      attach(ns, `v${p.name}`, p.addr);
      const m = etcdMember({ name: p.name, host: p.addr, clientPort: CLIENT_PORT, peerPort: PEER_PORT, cluster: initial, netns: ns, dataDir: mkdtempSync(join(base, `${p.name}-`)) });
      m.ns = ns;
      m.addr = p.addr;
      /** SIGKILL the member (what a crashed etcd host looks like). */
      m.kill = () => m.stop('SIGKILL');
      /** Start it again on its data dir and wait until it answers (it needs a quorum to). */
      m.restart = async () => {
        await m.start({ waitHealthy: false });
        await until(`etcd member ${m.name} healthy`, () => etcdHealthy(m.endpoint, ns), 30_000);
      };
      cluster.members.push(m);
    }
    cluster.endpoints = cluster.members.map((m) => m.endpoint);
    cluster.url = `etcd://${cluster.endpoints.join(',')}/${keyPrefix}?ttl=${ttlS}`;
    // Members of a new cluster wait for each other: start all, then wait for every one.
    await Promise.all(cluster.members.map((m) => m.start({ waitHealthy: false })));
    for (const m of cluster.members) await until(`etcd member ${m.name} healthy`, () => etcdHealthy(m.endpoint, m.ns), 60_000);

    for (let i = 1; i <= hypervisors; i++) {
      const name = `h${i}`;
      const ns = addNs(`${tag}-${name}`);
      const port = `v${name}`;
      attach(ns, port, `fd00::${i}`);
      const dir = mkdtempSync(join(base, `${name}-`));
      const hostEnv = {
        PATH: process.env.PATH,
        HOME: dir,
        UNCLOUD_VM_STATE_DIR: join(dir, 'state'),
        UNCLOUD_VM_RUN_DIR: join(dir, 'run'),
        UNCLOUD_VM_CONFIG: join(ROOT, 'test/fixtures/empty-config.json'),
        UNCLOUD_VM_STORE: cluster.url,
        UNCLOUD_VM_HOST: name,
        UNCLOUD_VM_VXLAN_DEV: 'underlay',
        ...env,
      };
      const host = {
        name,
        ns,
        addr: `fd00::${i}`,
        env: hostEnv,
        runDir: hostEnv.UNCLOUD_VM_RUN_DIR,
        agent: null,
        agentLog: '',
        /** The CLI on this host. */
        cli: (args, opts = {}) => runCli(args, { ...opts, env: { ...hostEnv, ...opts.env }, netns: ns }),
        /** Start this host's agent; resolves once it holds its etcd lease. */
        startAgent: async () => {
          const child = spawn('ip', ['netns', 'exec', ns, process.execPath, BIN, 'agent'], { env: hostEnv, stdio: ['ignore', 'ignore', 'pipe'] });
          host.agent = child;
          host.agentLog = '';
          child.stderr.on('data', (d) => (host.agentLog += d));
          await until(`agent of ${name}`, () => /holds etcd lease/.test(host.agentLog) || child.exitCode !== null, 30_000);
          if (child.exitCode !== null) throw new Error(`agent of ${name} exited: ${host.agentLog}`);
          return child;
        },
        /** SIGKILL everything this host runs (agent, launchers, qemu): a hypervisor that dies. */
        kill: () => killNamespace(ns),
        /** Unplug the host from the underlay (etcd and VXLAN both unreachable), and plug it back. */
        cut: () => ip('-n', underlayNs, 'link', 'set', port, 'nomaster'),
        reconnect: () => ip('-n', underlayNs, 'link', 'set', port, 'master', 'ul'),
      };
      cluster.hosts.push(host);
    }
    return cluster;
  } catch (err) {
    await cluster.remove();
    throw err;
  }
}

/** Whether every member is up and the cluster has a leader (a quick check for callers). */
export function clusterHealthy(cluster) {
  return cluster.members.every((m) => m.running() && etcdHealthy(m.endpoint, m.ns));
}

