import { describe, expect, it } from 'vitest';
import { UUID_RE } from '../../src/core/vm-identity.js';
import { randomUuid } from '../../src/system/random-uuid.js';

describe('randomUuid', () => {
  it('gives version 4, variant 10 UUIDs in lower case, all different', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const u = randomUuid();
      expect(u).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(UUID_RE.test(u)).toBe(true);
      seen.add(u);
    }
    expect(seen.size).toBe(2000);
  });

  it('uses every hex digit in the random positions (not a constant or a short cycle)', () => {
    const digits = new Set(Array.from({ length: 200 }, () => randomUuid().replaceAll('-', '').slice(20)).join(''));
    expect(digits.size).toBe(16);
  });
});
