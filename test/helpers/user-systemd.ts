/**
 * A real `systemd --user` for unit tests, in a mount namespace of its own inside the test's network
 * namespace (GUIDE.md §4). `ip netns exec` mounts a fresh /sys without cgroups, so the cgroup hierarchies
 * systemd needs are mounted again inside. Commands run in the same namespaces through nsenter.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './cli.js';

export interface UserSystemd {
  pid: number;
  home: string;
  /** Run a command inside systemd's namespaces, with its HOME and XDG_RUNTIME_DIR. */
  run: (cmd: string, args: string[], env?: NodeJS.ProcessEnv) => SpawnSyncReturns<string>;
  systemctl: (...args: string[]) => SpawnSyncReturns<string>;
  stop: () => void;
}

export async function startUserSystemd(netns: string, dir: string): Promise<UserSystemd> {
  const home = join(dir, 'home');
  const runtime = join(dir, 'xdg-runtime');
  mkdirSync(home, { recursive: true });
  mkdirSync(runtime, { recursive: true });
  chmodSync(runtime, 0o700);
  const script = join(dir, 'user-systemd.sh');
  writeFileSync(
    script,
    `set -e
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/systemd/system
if [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ] && [ ! -d /sys/fs/cgroup/systemd ]; then
  if grep -q 'name=systemd' /proc/self/cgroup; then
    mount -t tmpfs cgroup /sys/fs/cgroup
    mkdir -p /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
    mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
    mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
  else
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
  fi
fi
export HOME=${JSON.stringify(home)} XDG_RUNTIME_DIR=${JSON.stringify(runtime)}
exec /lib/systemd/systemd --user
`,
  );
  const child = spawn('ip', ['netns', 'exec', netns, 'unshare', '-m', 'bash', script], { stdio: 'ignore', detached: true });
  const pid = child.pid!;
  const env = { PATH: process.env.PATH, HOME: home, XDG_RUNTIME_DIR: runtime };
  const run = (cmd: string, args: string[], extra: NodeJS.ProcessEnv = {}) =>
    spawnSync('nsenter', ['-t', String(pid), '-m', '-n', 'env', ...Object.entries({ ...env, ...extra }).map(([k, v]) => `${k}=${v}`), cmd, ...args], {
      encoding: 'utf8',
    });
  const systemctl = (...args: string[]) => run('systemctl', ['--user', ...args]);
  await waitFor('systemd --user', () => /running|degraded/.test(systemctl('is-system-running').stdout), 20_000);
  return {
    pid,
    home,
    run,
    systemctl,
    stop: () => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    },
  };
}
