/** Signals held while a start takes what it needs: the first one remembered, the process not ended, released after. */
import { describe, expect, it } from 'vitest';
import { exitCodeOf, holdSignals, STOP_SIGNALS } from '../../src/qemu/held-signals.js';

const until = async (cond: () => boolean): Promise<void> => {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
};

describe('holdSignals', () => {
  it('real signals while held: the process lives on, the first one is remembered, later ones do not replace it', async () => {
    const held = holdSignals();
    try {
      expect(held.signal).toBeUndefined();
      process.kill(process.pid, 'SIGHUP');
      await until(() => held.signal !== undefined);
      process.kill(process.pid, 'SIGINT');
      await new Promise((r) => setTimeout(r, 50));
      expect(held.signal).toBe('SIGHUP');
    } finally {
      held.release();
    }
  });

  it('release takes its handlers off again, for every stop signal', () => {
    const before = STOP_SIGNALS.map((s) => process.listenerCount(s));
    const held = holdSignals();
    expect(STOP_SIGNALS.map((s) => process.listenerCount(s))).toEqual(before.map((n) => n + 1));
    held.release();
    expect(STOP_SIGNALS.map((s) => process.listenerCount(s))).toEqual(before);
  });

  it('two holds at once each remember the signal', async () => {
    const a = holdSignals();
    const b = holdSignals();
    try {
      process.kill(process.pid, 'SIGHUP');
      await until(() => a.signal !== undefined && b.signal !== undefined);
      expect([a.signal, b.signal]).toEqual(['SIGHUP', 'SIGHUP']);
    } finally {
      a.release();
      b.release();
    }
  });
});

describe('exitCodeOf', () => {
  it.each([
    ['SIGHUP', 129],
    ['SIGINT', 130],
    ['SIGKILL', 137],
    ['SIGTERM', 143],
    ['NOT_A_SIGNAL', 128],
  ])('%s → %i', (sig, code) => {
    expect(exitCodeOf(sig)).toBe(code);
  });
});
