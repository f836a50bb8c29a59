/** The bash completion generated from the program: run in a real bash, as a user's TAB would. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { bashCompletion } from '../../src/cli/completion.js';
import { buildProgram } from '../../src/cli/program.js';

const script = bashCompletion(await buildProgram({ exitCode: 0 }));

/** What bash offers for these words, the last being the one under the cursor. */
function complete(words: string[]): string[] {
  const r = spawnSync('/bin/bash', ['--norc', '--noprofile', '-c', `${script}\nCOMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _uncloud_vm; printf '%s\\n' "\${COMPREPLY[@]}"`, 'bash', ...words], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: '/nonexistent' }, // `list` for VM names finds no uncloud-vm: no names, no side effects
  });
  expect(r.stderr).toBe('');
  return r.stdout.split('\n').filter(Boolean).sort();
}

describe('bash completion', () => {
  it.each([
    [['uncloud-vm', 'st'], ['start', 'status', 'stop']],
    [['uncloud-vm', 'mac', ''], ['allocate', 'list', 'pool', 'release']],
    [['uncloud-vm', 'start', '--accel', ''], ['auto', 'kvm', 'tcg']],
    [['uncloud-vm', 'start', '--memo'], ['--memory']],
    // A global option's value is skipped on the way to the verb.
    [['uncloud-vm', '--store', 'etcd://h:2379', 'mac', 'rel'], ['release']],
    // A value with nothing to offer (a size) gets nothing, not the verbs.
    [['uncloud-vm', 'start', '--memory', ''], []],
    // An alias is a verb too, and completes as the verb it stands for.
    [['uncloud-vm', 'r'], ['reboot', 'reset', 'resume', 'rm']],
    [['uncloud-vm', 'rm', '--h'], ['--help']],
  ])('%j offers %j', (words, want) => {
    expect(complete(words)).toEqual(want);
  });

  it("offers VM names for an alias's argument as for the verb's", () => {
    expect(script).toContain(`_uvm_vmarg['uncloud-vm forget']=1`);
    expect(script).toContain(`_uvm_vmarg['uncloud-vm rm']=1`);
  });

  it('offers every verb of the program at the top', () => {
    expect(complete(['uncloud-vm', ''])).toEqual(expect.arrayContaining(['agent', 'completion', 'gc', 'list', 'mac', 'network', 'start', 'stop', 'unit']));
  });
});
