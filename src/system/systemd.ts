/** Where unit files go and how systemctl is asked to notice them. */
import { spawnSync } from 'node:child_process';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UncloudError } from '../core/errors.js';

export function unitDir(user: boolean, env: NodeJS.ProcessEnv = process.env): string {
  if (!user) return '/etc/systemd/system';
  const config = env.XDG_CONFIG_HOME || join(env.HOME ?? homedir(), '.config');
  return join(config, 'systemd', 'user');
}

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
