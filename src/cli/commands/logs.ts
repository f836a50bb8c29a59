/** `uncloud-vm logs <vm>`: a VM's serial log (or qemu's stderr), kept after the VM ended; -f follows it. */
import { existsSync } from 'node:fs';
import { printable, UncloudError, usageError } from '../../core/errors.js';
import { vmLogFiles } from '../../core/vm-files.js';
import { NAME_RE, UUID_RE } from '../../core/vm-identity.js';
import { followLog, logGenerations, readBytesFrom } from '../../system/vm-logs.js';
import type { Context } from '../context.js';
import { findVm } from './shared/vm-target.js';
import type { Command } from 'commander';
import type { Action } from './shared/action.js';

export function define(program: Command, action: Action): void {
  program
    .command('logs')
    .description("a VM's serial console log, kept after it ended (--qemu: qemu's own messages)")
    .argument('<vm>', 'VM name or UUID')
    .option('-f, --follow', 'keep printing what is appended (Ctrl-C ends)')
    .option('--qemu', "qemu's stderr instead of the serial log")
    .addHelpText(
      'after',
      `
Logs live under the state dir (logs/<vm>/serial.log and qemu.log), are appended to on every start, and a log
over 4 MiB is rotated to <file>.1 when the VM starts. 'uncloud-vm forget' removes them.

Examples:
  uncloud-vm logs web1
  uncloud-vm logs web1 -f
  uncloud-vm logs web1 --qemu`,
    )
    .action(action((a, o, ctx) => logs(a[0]!, o, ctx)));
}

/** The name of a VM given by name, or by UUID while it runs or is remembered. */
export async function vmNameOf(target: string, ctx: Context): Promise<string> {
  if (UUID_RE.test(target)) {
    const rec = findVm(target, ctx.settings.runDir);
    if (rec) return rec.name;
    const known = (await (await ctx.store()).listIdentities()).identities.find((id) => id.uuid === target.toLowerCase());
    if (known) return known.name;
  }
  if (!NAME_RE.test(target)) throw usageError(`invalid VM '${printable(target)}': expected a VM name or UUID`);
  return target;
}

export async function logs(
  target: string,
  flags: { follow?: boolean; qemu?: boolean },
  ctx: Context,
  write: (chunk: Buffer) => void = (chunk) => void process.stdout.write(chunk),
): Promise<number> {
  const name = await vmNameOf(target, ctx);
  const files = vmLogFiles(ctx.settings.stateDir, name);
  if (!existsSync(files.dir)) throw new UncloudError('NO_LOGS', `VM ${name} has no logs (none in ${files.dir})`);
  const path = flags.qemu ? files.qemu : files.serial;
  let offset = 0;
  for (const file of logGenerations(path)) {
    const bytes = readBytesFrom(file, 0);
    write(bytes);
    if (file === path) offset = bytes.length;
    // The older generation may end mid-line (a guest's last words): the next one starts on a line of its own.
    else if (bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a) write(Buffer.from('\n'));
  }
  if (!flags.follow) return 0;
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await followLog(path, offset, write, stop.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return 0;
}
