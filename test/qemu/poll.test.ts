/** waitUntil: true as soon as the condition holds, false when time runs out, the periodic tick in between. */
import { describe, expect, it } from 'vitest';
import { waitUntil } from '../../src/qemu/poll.js';

/** A condition that holds from its nth check on (1 = at once, Infinity = never). */
function holdsFrom(n: number): { cond: () => boolean; checks: () => number } {
  let count = 0;
  return {
    cond: () => {
      count += 1;
      return count >= n;
    },
    checks: () => count,
  };
}

describe('waitUntil', () => {
  it.each([
    { what: 'holds at once', from: 1, ms: 1000, held: true, checks: 1 },
    { what: 'holds on the third check', from: 3, ms: 5000, held: true, checks: 3 },
    { what: 'no time at all, but holds: the last check says so', from: 1, ms: 0, held: true, checks: 1 },
    { what: 'no time at all, does not hold', from: 2, ms: 0, held: false, checks: 1 },
  ])('$what', async ({ from, ms, held, checks }) => {
    const c = holdsFrom(from);
    expect(await waitUntil(c.cond, ms)).toBe(held);
    expect(c.checks()).toBe(checks);
  });

  it('never holds: false once the time is up, after checking more than once', async () => {
    const c = holdsFrom(Infinity);
    expect(await waitUntil(c.cond, 200)).toBe(false);
    expect(c.checks()).toBeGreaterThan(1);
  });

  it('a condition that an event sets meanwhile is seen', async () => {
    let flag = false;
    setTimeout(() => {
      flag = true;
    }, 30);
    expect(await waitUntil(() => flag, 10_000)).toBe(true);
  });

  it('the periodic tick runs while waiting, with whole elapsed seconds that never go back', async () => {
    const ticks: number[] = [];
    expect(await waitUntil(() => false, 400, { every: 100, tick: (s) => ticks.push(s) })).toBe(false);
    expect(ticks.length).toBeGreaterThan(0);
    for (const s of ticks) expect(Number.isInteger(s) && s >= 0).toBe(true);
    expect([...ticks].sort((a, b) => a - b)).toEqual(ticks);
  });

  it('no tick when the condition holds at once', async () => {
    const ticks: number[] = [];
    expect(await waitUntil(() => true, 1000, { every: 0, tick: (s) => ticks.push(s) })).toBe(true);
    expect(ticks).toEqual([]);
  });
});
