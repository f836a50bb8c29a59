/**
 * `uncloud-vm completion bash`: a bash completion script generated from the commander tree, so it knows
 * every verb and option the program has, with no list kept by hand.
 */
import type { Command, Option } from 'commander';
import { usageError } from '../core/errors.js';
import { shellQuote } from '../core/quote.js';
import type { Context } from './context.js';
import type { Action } from './commands/shared/action.js';
import { examples } from './commands/shared/help.js';

export function define(program: Command, action: Action): void {
  program
    .command('completion')
    .description('print a bash completion script (verbs, options, their values, VM names)')
    .argument('[shell]', 'bash (the only one)', 'bash')
    .addHelpText(
      'after',
      examples('source <(uncloud-vm completion bash)', 'uncloud-vm completion bash > /etc/bash_completion.d/uncloud-vm'),
    )
    .action(action((a, _o, ctx) => completion(a[0], program, ctx)));
}

/** Option values that are (or start with) a path: --disk <spec>, --kernel <file>, --state-dir <dir>… */
const PATH_VALUE = /<(file|dir|iso|spec|binary)>/;

interface Node {
  path: string;
  subs: string[];
  flags: string[];
  /** Flags that take a value: their choices, files, or nothing to offer (a size, a name). */
  valued: Map<string, string[] | 'files' | 'none'>;
  /** The first argument is a VM (name or UUID): offer the names `list` knows. */
  vmArg: boolean;
}

function visible(cmd: Command): Command[] {
  return cmd.commands.filter((c) => !(c as unknown as { _hidden: boolean })._hidden);
}

function nodes(cmd: Command, path: string, out: Node[]): Node[] {
  const options = cmd.options as readonly Option[];
  const flags = options.flatMap((o) => [o.long, o.short].filter((f): f is string => f !== undefined));
  flags.push('--help');
  const valued = new Map<string, string[] | 'files' | 'none'>();
  for (const o of options) {
    if (!o.required && !o.optional) continue;
    const values = o.argChoices ?? (PATH_VALUE.test(o.flags) ? 'files' : 'none');
    for (const f of [o.long, o.short]) if (f !== undefined) valued.set(f, values);
  }
  const arg = cmd.registeredArguments[0]?.name();
  // A verb's aliases (`rm` for forget) complete as the verb does.
  const names = (c: Command) => [c.name(), ...c.aliases()];
  out.push({ path, subs: visible(cmd).flatMap(names), flags, valued, vmArg: arg === 'vm' });
  for (const sub of visible(cmd)) for (const name of names(sub)) nodes(sub, `${path} ${name}`, out);
  return out;
}

export function bashCompletion(program: Command): string {
  const all = nodes(program, program.name(), []);
  const q = (words: string[]) => shellQuote(words.join(' '));
  const lines = all.flatMap((n) => {
    const key = shellQuote(n.path);
    const out = [`  _uvm_subs[${key}]=${q(n.subs)}`, `  _uvm_flags[${key}]=${q(n.flags)}`];
    for (const [flag, values] of n.valued) out.push(`  _uvm_values[${shellQuote(`${n.path} ${flag}`)}]=${Array.isArray(values) ? q(values) : `'<${values}>'`}`);
    if (n.vmArg) out.push(`  _uvm_vmarg[${key}]=1`);
    return out;
  });
  const root = shellQuote(program.name());
  return `# bash completion for ${program.name()}: source <(${program.name()} completion bash)
# (or save it as /etc/bash_completion.d/${program.name()}). Generated from the program's own verbs and options.
_uncloud_vm() {
  local -A _uvm_subs _uvm_flags _uvm_values _uvm_vmarg
${lines.join('\n')}
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  local path=${root} i w
  # Walk the words typed so far: descend into verbs, skip the values of options that take one.
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    if [[ -n \${_uvm_values["$path $w"]+x} || -n \${_uvm_values[${root}" $w"]+x} ]]; then
      ((i++))
    elif [[ " \${_uvm_subs[$path]} " == *" $w "* ]]; then
      path="$path $w"
    fi
  done
  local values=\${_uvm_values["$path $prev"]-\${_uvm_values[${root}" $prev"]-}}
  if [[ $values == '<files>' ]]; then
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
  elif [[ $values == '<none>' ]]; then
    COMPREPLY=()
  elif [[ -n $values ]]; then
    COMPREPLY=($(compgen -W "$values" -- "$cur"))
  elif [[ $cur == -* ]]; then
    local flags=\${_uvm_flags[$path]}
    [[ $path == ${root} ]] || flags="$flags \${_uvm_flags[${root}]/--help/}"
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
  elif [[ -n \${_uvm_subs[$path]} ]]; then
    COMPREPLY=($(compgen -W "\${_uvm_subs[$path]}" -- "$cur"))
  elif [[ -n \${_uvm_vmarg[$path]+x} ]]; then
    local names
    names=$(${program.name()} list --json 2>/dev/null | sed -n 's/^    "name": "\\(.*\\)",$/\\1/p')
    COMPREPLY=($(compgen -W "$names" -- "$cur"))
  fi
}
complete -F _uncloud_vm ${program.name()}
`;
}

export async function completion(shell: string | undefined, program: Command, ctx: Context): Promise<number> {
  if ((shell ?? 'bash') !== 'bash') {
    throw usageError(`no completion for '${shell}': only bash is supported`);
  }
  ctx.out(bashCompletion(program).trimEnd());
  return 0;
}
