/** Tap names: deterministic from the UUID, at most 15 characters, the same attempt for every NIC of a VM. */
import { describe, expect, it } from 'vitest';
import { freeTapNames, MAX_NICS, TAP_RE, tapName } from '../../src/core/tap-name.js';

const U = '01234567-89ab-cdef-4000-800000000000';
const V = '01234567-89AB-0000-4000-800000000001'; // shares U's first ten hex digits, in capitals

describe('tapName', () => {
  it.each([
    [U, 0, 0, 'uc0123456789n0'],
    [U, 7, 0, 'uc0123456789n7'],
    [V, 3, 0, 'uc0123456789n3'],
  ])('%s NIC %i attempt %i → %s', (uuid, index, attempt, name) => {
    expect(tapName(uuid, index, attempt)).toBe(name);
  });

  it('later attempts: a hash of the UUID and the attempt, still our pattern, stable, and not the first attempt\'s name', () => {
    const a1 = tapName(U, 0, 1);
    expect(a1).toMatch(TAP_RE);
    expect(a1).toHaveLength(14);
    expect(tapName(U, 0, 1)).toBe(a1);
    expect(a1).not.toBe(tapName(U, 0, 0));
    expect(tapName(U, 0, 2)).not.toBe(a1);
    // The case of the UUID does not change the hash.
    expect(tapName(V.toLowerCase(), 0, 1)).toBe(tapName(V, 0, 1));
  });

  it.each([-1, MAX_NICS, 1.5, Number.NaN])('NIC index %s is refused', (index) => {
    expect(() => tapName(U, index)).toThrow(RangeError);
  });
});

describe('freeTapNames', () => {
  it('nothing in use: the first attempt for every NIC', () => {
    expect(freeTapNames(U, [0, 1, 2], () => false)).toEqual(['uc0123456789n0', 'uc0123456789n1', 'uc0123456789n2']);
  });

  it('one NIC\'s name in use: every NIC moves to the next attempt together, so they stay alike', () => {
    const names = freeTapNames(U, [0, 1], (t) => t === 'uc0123456789n1');
    expect(names).toEqual([tapName(U, 0, 1), tapName(U, 1, 1)]);
    expect(names[0]!.slice(0, 12)).toBe(names[1]!.slice(0, 12));
  });

  it('the next attempt in use too: the one after', () => {
    const taken = new Set([tapName(U, 0, 0), tapName(U, 0, 1)]);
    expect(freeTapNames(U, [0], (t) => taken.has(t))).toEqual([tapName(U, 0, 2)]);
  });
});
