/** `uncloud-vm console <vm>`: this terminal on the serial console of a running VM, however it was started. */
import { dirname } from 'node:path';
import { UncloudError } from '../../core/errors.js';
import type { Terminal } from '../../qemu/console.js';
import type { Context } from '../context.js';
import { requireRunning } from './shared/vm-target.js';
import type { Command } from 'commander';
import type { Action } from './shared/action.js';

export function define(program: Command, action: Action): void {
  program
    .command('console')
    .description('attach this terminal to the serial console of a running VM (Ctrl-] detaches)')
    .argument('<vm>', 'VM name or UUID')
    .addHelpText(
      'after',
      `
One console at a time: a second one is refused while another is attached. The guest's serial output is
logged whether anyone is attached or not ('uncloud-vm logs'). A VM started with 'start --console' has its
console on that terminal instead.

Examples:
  uncloud-vm console web1`,
    )
    .action(action((a, _o, ctx) => consoleVerb(a[0]!, ctx)));
}

export async function consoleVerb(target: string, ctx: Context, term: Terminal = { input: process.stdin, output: process.stdout }): Promise<number> {
  const { name, rec, power, consoleSocket } = requireRunning(target, ctx);
  if (consoleSocket === null) {
    throw new UncloudError('NO_CONSOLE', `VM ${name}'s serial console is on the terminal of the 'start --console' that runs it`);
  }
  if (consoleSocket === undefined) {
    throw new UncloudError('NO_CONSOLE', `VM ${name} was started by an uncloud-vm without console sockets; its serial output is in ${rec?.serialLog}`);
  }
  const { attachConsole, consoleAttached, ESCAPE_NAME } = await import('../../qemu/console.js');
  const { tryDirLock } = await import('../../system/dir-lock.js');
  const busy = () => new UncloudError('CONSOLE_BUSY', `another console is attached to VM ${name}; only one at a time (it detaches with ${ESCAPE_NAME})`);
  // One console at a time, atomically: the lock is held while attached (qemu itself only queues a second
  // client of its socket). qemu's own view catches a client that is not an uncloud-vm console.
  const unlock = await tryDirLock(dirname(consoleSocket), { name: 'console.lock', what: `the console of VM ${name}` });
  if (!unlock) throw busy();
  let how: 'detached' | 'closed';
  try {
    if (await consoleAttached(power.qmpSocket)) throw busy();
    how = await attachConsole(consoleSocket, term, () => {
      ctx.err(`connected to the serial console of VM ${name}; ${ESCAPE_NAME} detaches (everything is also logged: 'uncloud-vm logs ${name}')`);
    });
  } finally {
    await unlock();
  }
  if (term.input.isTTY) term.output.write('\r\n');
  ctx.err(how === 'detached' ? `detached from VM ${name}` : `the console of VM ${name} closed: the VM ended`);
  return 0;
}
