/** The real test guest (scripts/build-test-guest.sh), booted through the built `uncloud-vm start`. */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, type CliResult, ROOT, type Sandbox, waitFor } from './cli.js';

/** Where a VM's serial log is kept (under the state dir, outliving the VM). */
export function serialLogOf(sb: Sandbox, name: string): string {
  return join(sb.stateDir, 'logs', name, 'serial.log');
}

export function buildGuest(): { kernel: string; initrd: string } {
  const dir = execFileSync('bash', [join(ROOT, 'scripts/build-test-guest.sh')], { encoding: 'utf8' }).trim().split('\n').pop()!;
  return { kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initramfs.gz') };
}

export interface BootedVm {
  name: string;
  done: Promise<CliResult>;
  child: () => ChildProcess;
  serial: () => string;
  waitSerial: (re: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
}

export function bootGuest(
  guest: { kernel: string; initrd: string },
  sb: Sandbox,
  netns: string,
  name: string,
  opts: { append?: string; args?: string[] } = {},
): BootedVm {
  let child: ChildProcess | undefined;
  const done = cli(
    [
      'start', '--name', name, '--accel', 'tcg', '--memory', '192',
      '--kernel', guest.kernel, '--initrd', guest.initrd, '--no-reboot',
      '--append', `console=ttyS0 panic=-1 quiet ${opts.append ?? ''}`.trim(),
      ...(opts.args ?? []),
    ],
    { env: sb.env, netns, onSpawn: (c) => (child = c) },
  );
  const logPath = serialLogOf(sb, name);
  const serial = () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  return {
    name,
    done,
    child: () => child!,
    serial,
    waitSerial: (re, timeoutMs = 90_000) => waitFor(`${name}: ${re}`, () => serial().match(re) ?? undefined, timeoutMs),
  };
}
