/** Where unit files go and how systemctl is asked to notice them. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UncloudError } from '../core/errors.js';
import { writeFileAtomic } from './atomic-file.js';

export function unitDir(user: boolean, env: NodeJS.ProcessEnv = process.env): string {
  if (!user) return '/etc/systemd/system';
  const config = env.XDG_CONFIG_HOME || join(env.HOME ?? homedir(), '.config');
  return join(config, 'systemd', 'user');
}

/** The etcd store's per-host agent; VM units on etcd are ordered after it and require it. */
export const AGENT_UNIT = 'uncloud-vm-agent.service';

export function unitName(vmName: string): string {
  return `uncloud-vm-${vmName}.service`;
}

export function systemctl(user: boolean, ...args: string[]): void {
  const argv = [...(user ? ['--user'] : []), ...args];
  const r = spawnSync('systemctl', argv, { encoding: 'utf8' });
  if (r.error) throw new UncloudError('SYSTEMCTL', `cannot run systemctl: ${r.error.message}`);
  if (r.status !== 0) {
    throw new UncloudError('SYSTEMCTL', `systemctl ${argv.join(' ')} failed: ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
  }
}

/**
 * Write a unit file and have systemd read it (then run `after`, e.g. enable). If systemctl fails, the unit
 * dir is given back as it was (the file removed, or the previous one restored) and systemd reloaded again.
 */
export function installUnit(user: boolean, file: string, text: string, after: string[][] = []): string {
  const dir = unitDir(user);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const path = join(dir, file);
  const previous = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  writeFileAtomic(path, text, 0o644);
  try {
    systemctl(user, 'daemon-reload');
    for (const args of after) systemctl(user, ...args);
  } catch (err) {
    if (previous === undefined) rmSync(path, { force: true });
    else writeFileAtomic(path, previous, 0o644);
    try {
      systemctl(user, 'daemon-reload');
    } catch {
      // systemd is what failed: it reads the unit dir as it is now when it is back.
    }
    const undone = previous === undefined ? `removed ${path} again` : `put the previous ${path} back`;
    throw new UncloudError('SYSTEMCTL', `${(err as Error).message}; ${undone}`);
  }
  return path;
}
