/** --timeout and --stop-timeout: whole seconds from 0 to 86400, anything else a usage error naming the flag. */
import { describe, expect, it } from 'vitest';
import { parseTimeout } from '../../../../src/cli/commands/shared/timeout.js';

describe('parseTimeout', () => {
  it.each([['0', 0], ['60', 60], ['86400', 86400]])('%s is %d s', (text, s) => {
    expect(parseTimeout(text, '--timeout')).toBe(s);
  });
  it.each(['', '-1', '1.5', '86401', '1e3', ' 5', 'soon'])('refuses %j', (text) => {
    expect(() => parseTimeout(text, '--stop-timeout')).toThrow(expect.objectContaining({ exitCode: 2, message: `invalid --stop-timeout '${text}': expected whole seconds from 0 to 86400` }));
  });
});
