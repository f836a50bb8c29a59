/** A real etcd (Debian's etcd-server) on loopback, with a temp data dir and free ports. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './cli.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface EtcdServer {
  endpoint: string;
  /** store URL for a key prefix of its own */
  url: (prefix: string, ttlS?: number) => string;
  stop: () => Promise<void>;
  start: () => Promise<void>;
  remove: () => Promise<void>;
}

/** etcd on loopback; inside a network namespace when given (its CLI calls must then run there too). */
export async function startEtcd(netns?: string): Promise<EtcdServer> {
  const dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-etcd-'));
  const client = await freePort();
  const peer = await freePort();
  const endpoint = `127.0.0.1:${client}`;
  let proc: ChildProcess | undefined;
  const inNs = (cmd: string, args: string[]): [string, string[]] => (netns ? ['ip', ['netns', 'exec', netns, cmd, ...args]] : [cmd, args]);
  const start = async (): Promise<void> => {
    proc = spawn(
      ...inNs('etcd', [
        '--name', 'test', '--data-dir', join(dir, 'data'),
        '--listen-client-urls', `http://${endpoint}`, '--advertise-client-urls', `http://${endpoint}`,
        '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
        '--initial-cluster', `test=http://127.0.0.1:${peer}`, '--log-level', 'error',
      ]),
      { stdio: 'ignore' },
    );
    await waitFor('etcd health', () => {
      const [cmd, args] = inNs('etcdctl', ['--endpoints', endpoint, '--dial-timeout', '1s', 'endpoint', 'health']);
      return spawnSync(cmd, args, { env: { ...process.env, ETCDCTL_API: '3' } }).status === 0;
    }, 30_000);
  };
  const stop = async (): Promise<void> => {
    if (!proc || proc.exitCode !== null) return;
    const p = proc;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
  };
  await start();
  return {
    endpoint,
    url: (prefix, ttlS) => `etcd://${endpoint}/${prefix}${ttlS ? `?ttl=${ttlS}` : ''}`,
    stop,
    start,
    remove: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
