/** What a new operator runs into first: bare verbs, help with examples, sizes, overcommit, completion. */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, cli, sandbox, type Sandbox } from '../helpers/cli.js';

let sb: Sandbox;
beforeAll(() => {
  sb = sandbox();
});
afterAll(() => sb.cleanup());

const run = (args: string[]) => cli(args, { env: sb.env });

/** The verbs a --help lists under "Commands:" (without commander's own "help"). */
const verbsIn = (help: string): string[] =>
  [...(help.split('Commands:\n')[1] ?? '').split('\n\n')[0]!.matchAll(/^  ([a-z-]+)/gm)].map((m) => m[1]!).filter((v) => v !== 'help');

describe('bare verbs', () => {
  it.each([[[]], [['mac']]])('uncloud-vm %j prints its help on stdout and exits 0', async (args) => {
    const r = await run(args);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^Usage: uncloud-vm/);
    expect(r.stdout).toContain('Commands:');
  });
});

describe('--help', () => {
  it('every verb, and every verb of a group (mac …), has examples that use it', async () => {
    const verbs = verbsIn((await run(['--help'])).stdout);
    expect(verbs).toEqual(expect.arrayContaining(['start', 'stop', 'status', 'list', 'gc', 'unit', 'agent', 'mac', 'completion']));
    // Verbs that group others (mac, network): their own verbs too.
    const all: string[][] = [];
    for (const v of verbs) {
      all.push([v]);
      for (const sub of verbsIn((await run([v, '--help'])).stdout)) all.push([v, sub]);
    }
    expect(all).toEqual(expect.arrayContaining([['mac', 'allocate'], ['mac', 'release'], ['mac', 'list'], ['mac', 'pool']]));
    for (const path of all) {
      const help = (await run([...path, '--help'])).stdout;
      const examples = help.split('\nExamples:\n')[1];
      expect(examples, `${path.join(' ')} --help`).toBeDefined();
      // The verb itself, after any global options: "uncloud-vm --store etcd://… agent --unit".
      expect(examples, `${path.join(' ')} --help`).toMatch(new RegExp(`^  (\\S+=\\S+ )?uncloud-vm( --\\S+( [^-\\s]\\S*)?)* ${path.join(' ')}\\b`, 'm'));
    }
  });

  it('start --help says what SIGHUP does', async () => {
    expect((await run(['start', '--help'])).stdout).toMatch(/SIGHUP does the same: a foreground start in an SSH session stops its VM/);
  });
});

describe('sizes and counts', () => {
  it.each([
    ['1G', '1024'],
    ['2048M', '2048'],
    ['1536', '1536'],
  ])('--memory %s gives qemu -m %s', async (memory, m) => {
    const r = await run(['start', '--dry-run', '--json', '--accel', 'tcg', '--memory', memory]);
    expect(r.code, r.stderr).toBe(0);
    const argv: string[] = JSON.parse(r.stdout).argv;
    expect(argv[argv.indexOf('-m') + 1]).toBe(m);
  });

  it('--cores above the host CPUs is allowed, with a one-line warning', async () => {
    const cpus = Number(execFileSync('nproc', { encoding: 'utf8' }));
    const r = await run(['start', '--dry-run', '--json', '--accel', 'tcg', '--cores', String(cpus + 2)]);
    expect(r.code, r.stderr).toBe(0);
    const argv: string[] = JSON.parse(r.stdout).argv;
    expect(argv[argv.indexOf('-smp') + 1]).toBe(String(cpus + 2));
    expect(r.stderr).toContain(`uncloud-vm: warning: --cores ${cpus + 2} is more than this host's ${cpus} CPUs; the guest's vCPUs will share them\n`);
  });
});

describe('completion', () => {
  /** Load the script in bash, complete the words given (the last is being typed), print the candidates. */
  const complete = async (words: string[]) => {
    const script = (await run(['completion', 'bash'])).stdout;
    const fn = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _uncloud_vm; printf '%s\\n' "\${COMPREPLY[@]}"`;
    // VM names come from `uncloud-vm list`: the built binary under that name on PATH.
    const bin = join(sb.stateDir, '..', 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'uncloud-vm'), `#!/bin/sh\nexec '${process.execPath}' '${BIN}' "$@"\n`, { mode: 0o755 });
    return execFileSync('bash', ['-c', fn], { encoding: 'utf8', env: { ...sb.env, PATH: `${bin}:${process.env.PATH}` } })
      .split('\n')
      .filter(Boolean);
  };

  it.each<[string[], string[]]>([
    [['uncloud-vm', 'st'], ['start', 'stop', 'status']],
    [['uncloud-vm', 'mac', ''], ['allocate', 'release', 'list', 'pool']],
    [['uncloud-vm', 'start', '--di'], ['--disk']],
    [['uncloud-vm', 'start', '--accel', ''], ['auto', 'kvm', 'tcg']],
    [['uncloud-vm', '--store', 'file', 'start', '--memory', '1G', '--no-'], ['--no-reboot']],
    [['uncloud-vm', 'start', '--memory', ''], []],
    [['uncloud-vm', '--st'], ['--state-dir', '--store']],
  ])('%j → %j', async (words, want) => {
    expect(await complete(words)).toEqual(want);
  });

  it('offers files after an option that takes a path', async () => {
    expect(await complete(['uncloud-vm', 'start', '--kernel', '/etc/hostnam'])).toEqual(['/etc/hostname']);
    expect(await complete(['uncloud-vm', 'start', '--disk', '/etc/hostnam'])).toEqual(['/etc/hostname']);
  });

  it('offers the VMs `list` knows where a verb takes a VM', async () => {
    expect((await run(['mac', 'allocate', '--vm', 'web7'])).code).toBe(0);
    expect(await complete(['uncloud-vm', 'status', 'we'])).toEqual(['web7']);
    expect(await complete(['uncloud-vm', 'stop', '--force', ''])).toEqual(['web7']);
  });
});
