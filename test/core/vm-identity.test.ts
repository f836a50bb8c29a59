/** VM names and UUIDs, by tables. */
import { describe, expect, it } from 'vitest';
import { validateName, validateUuid } from '../../src/core/vm-identity.js';

describe('validateUuid', () => {
  it.each(['123e4567-e89b-42d3-a456-426614174000', '7B5B0D47-2B2B-5C26-8F0F-D7E5AE6F07B3'])('accepts %s', (u) => {
    expect(validateUuid(u)).toBe(u.toLowerCase());
  });
  it.each(['', 'not-a-uuid', '123e4567-e89b-02d3-a456-426614174000', '123e4567e89b42d3a456426614174000', '123e4567-e89b-42d3-a456-42661417400g'])(
    'refuses %j',
    (u) => {
      expect(() => validateUuid(u)).toThrow(/invalid --uuid/);
    },
  );
});

describe('validateName', () => {
  it.each(['web1', 'a', 'db-2.prod_x', '9lives'])('accepts %s', (n) => {
    expect(validateName(n)).toBe(n);
  });
  it.each(['-x', '.hidden', 'a$(id)', "a'b", 'ä', ''])('refuses %j', (n) => {
    expect(() => validateName(n)).toThrow(/invalid VM name/);
  });
});
