/**
 * The program: global options, the top-level help, and which module defines each verb. A command's flags,
 * help and action live in its own module (commands/<verb>.ts); only the module of the verb being run is
 * loaded, and all of them for help, completion or an unknown verb.
 */
import { Command } from 'commander';
import { type Define, makeAction, type ProgramResult } from './commands/shared/action.js';
import { write } from './output.js';

export type { ProgramResult } from './commands/shared/action.js';

interface CommandModule {
  define: Define;
}

/** Each module with the verbs it defines, in the order of the top-level help. */
const COMMANDS: { verbs: string[]; load: () => Promise<CommandModule> }[] = [
  { verbs: ['start'], load: () => import('./commands/start.js') },
  { verbs: ['stop'], load: () => import('./commands/stop.js') },
  { verbs: ['status'], load: () => import('./commands/status.js') },
  { verbs: ['console'], load: () => import('./commands/console.js') },
  { verbs: ['reboot', 'reset', 'pause', 'resume'], load: () => import('./commands/power.js') },
  { verbs: ['logs'], load: () => import('./commands/logs.js') },
  { verbs: ['forget', 'rm'], load: () => import('./commands/forget.js') },
  { verbs: ['list'], load: () => import('./commands/list.js') },
  { verbs: ['gc'], load: () => import('./commands/gc.js') },
  { verbs: ['unit'], load: () => import('./commands/unit.js') },
  { verbs: ['agent'], load: () => import('./commands/agent.js') },
  { verbs: ['mac'], load: () => import('./commands/mac.js') },
  { verbs: ['network'], load: () => import('./commands/network.js') },
  // completion describes every verb: it is given the whole program
  { verbs: [], load: () => import('./completion.js') },
  { verbs: ['hook'], load: () => import('./commands/hook.js') },
];

/** The global options that take a value, so the verb is not mistaken for one. */
const VALUE_OPTIONS = new Set(['--config', '--state-dir', '--run-dir', '--prefix', '--store']);

/** The verb in argv (after node and the script), or undefined when there is none or it cannot be told. */
export function verbOf(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (VALUE_OPTIONS.has(a)) i += 1;
    else if (a === '--') return undefined;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

function rootProgram(): Command {
  return new Command('uncloud-vm')
    .description('Start QEMU virtual machines on an uncloud host, with MAC addresses from a safe pool.')
    .version('0.1.0')
    .exitOverride()
    // Errors are printed by main.ts as one line; help shown for a bare group verb goes to stdout like --help.
    .configureOutput({ outputError: () => undefined, writeOut: (text) => write(1, text), writeErr: (text) => write(1, text) })
    .showSuggestionAfterError(true)
    .option('--config <file>', 'config file (JSON; default /etc/uncloud-vm/config.json)')
    .option('--state-dir <dir>', 'where the MAC pool lives (default /var/lib/uncloud-vm as root)')
    .option('--run-dir <dir>', 'where running VMs keep sockets and scripts (default /run/uncloud-vm as root)')
    .option('--prefix <octets>', 'MAC pool prefix, 1 to 5 octets (default 42:00:00)')
    .option('--force-prefix', 'accept a globally administered prefix (a multicast one is never accepted)')
    .option('--store <store>', "MAC pool store: 'file' (default) or etcd://host:port[,host:port…][/prefix][?ttl=s]")
    .addHelpText(
      'after',
      `
Settings come from /etc/uncloud-vm/config.json (or --config), then UNCLOUD_VM_* environment variables
(UNCLOUD_VM_STATE_DIR, UNCLOUD_VM_RUN_DIR, UNCLOUD_VM_PREFIX, UNCLOUD_VM_BRIDGE, UNCLOUD_VM_QEMU,
UNCLOUD_VM_STORE, UNCLOUD_VM_HOST, UNCLOUD_VM_CONFIG, UNCLOUD_VM_VXLAN_DEV, _LOCAL, _PEERS, _MTU), then flags. The etcd store also reads
UNCLOUD_VM_ETCD_CA, _CERT, _KEY (PEM files) and UNCLOUD_VM_ETCD_USER, _PASSWORD.

Examples:
  uncloud-vm start --dry-run --memory 1024 --cores 2
  uncloud-vm start --name web1 --memory 2048 --cores 2 --disk /var/lib/vms/web1.qcow2 --nic bridge=br0
  uncloud-vm unit web1 --memory 2048 --disk /var/lib/vms/web1.qcow2 --install --enable
  uncloud-vm stop web1
  uncloud-vm mac allocate
  uncloud-vm list`,
    );
}

/**
 * The program for these arguments (after node and the script): with the verb's module only, when the verb
 * is known, so a command loads what it uses; with every module otherwise.
 */
export async function buildProgram(result: ProgramResult, args: string[] = []): Promise<Command> {
  const program = rootProgram();
  const verb = verbOf(args);
  const one = verb === undefined ? undefined : COMMANDS.find((c) => c.verbs.includes(verb));
  // --version alone needs no command; help, completion and an unknown verb need all of them.
  const versionOnly = verb === undefined && args.some((a) => a === '--version' || a === '-V');
  const modules = await Promise.all((one ? [one] : versionOnly ? [] : COMMANDS).map((c) => c.load()));
  const action = makeAction(result);
  for (const m of modules) m.define(program, action);
  return program;
}
