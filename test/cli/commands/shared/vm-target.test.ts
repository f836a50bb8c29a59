/** What a verb accepts as a VM: a VM name or a UUID, nothing that could reach outside the run dir. */
import { describe, expect, it } from 'vitest';
import { checkTarget, findVm } from '../../../../src/cli/commands/shared/vm-target.js';

describe('checkTarget', () => {
  it.each(['web1', 'db-2.prod_x', '123e4567-e89b-42d3-a456-426614174000'])('accepts %s', (t) => {
    expect(() => checkTarget(t)).not.toThrow();
  });
  it.each(['../x', '', '.hidden', 'a b', 'a/b'])('refuses %j', (t) => {
    expect(() => checkTarget(t)).toThrow(expect.objectContaining({ exitCode: 2, message: expect.stringMatching(/expected a VM name or UUID$/) }));
  });
  it('findVm in a run dir that does not exist: none', () => {
    expect(findVm('web1', '/nonexistent/run')).toBeNull();
  });
});
