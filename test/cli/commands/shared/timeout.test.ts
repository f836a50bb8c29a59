/** parseTimeout: whole seconds from 0 to 86400, anything else a one-line usage error naming the flag and the value. */
import { describe, expect, it } from 'vitest';
import { parseTimeout } from '../../../../src/cli/commands/shared/timeout.js';
import { UncloudError } from '../../../../src/core/errors.js';

describe('parseTimeout', () => {
  it.each([
    ['0', 0],
    ['1', 1],
    ['60', 60],
    ['007', 7],
    ['86400', 86400],
  ])('%j → %i', (text, s) => {
    expect(parseTimeout(text, '--timeout')).toBe(s);
  });

  it.each(['', '-1', '1.5', '1e3', ' 60', '60s', '86401', '99999999999999999999', 'Infinity', '0x10'])('%j is refused (exit 2), naming the flag and what is allowed', (text) => {
    let err: unknown;
    try {
      parseTimeout(text, '--stop-timeout');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UncloudError);
    expect((err as UncloudError).code).toBe('USAGE');
    expect((err as UncloudError).exitCode).toBe(2);
    expect((err as UncloudError).message).toBe(`invalid --stop-timeout '${text}': expected whole seconds from 0 to 86400`);
  });

  it.each([
    ['1\n2', '1\\n2'],
    ['\u001b[2J', '\\u001b[2J'],
  ])('a value with a control character is printed escaped, on one line: %j', (text, shown) => {
    expect(() => parseTimeout(text, '--timeout')).toThrow(`invalid --timeout '${shown}': expected whole seconds from 0 to 86400`);
  });
});
