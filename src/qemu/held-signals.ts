/**
 * SIGINT/SIGTERM/SIGHUP held back while a start takes what its VM needs (claim, leases, scripts): the
 * first one is remembered instead of ending the process half-way, and the start gives everything back.
 */
import { constants as osConstants } from 'node:os';

export const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface HeldSignals {
  /** The first signal that came while held, if any. */
  readonly signal: NodeJS.Signals | undefined;
  /** Stop holding them (their default action, or other handlers, apply again). */
  release(): void;
}

export function holdSignals(): HeldSignals {
  let signal: NodeJS.Signals | undefined;
  const on = (sig: NodeJS.Signals): void => void (signal ??= sig);
  for (const s of STOP_SIGNALS) process.on(s, on);
  return {
    get signal() {
      return signal;
    },
    release: () => {
      for (const s of STOP_SIGNALS) process.off(s, on);
    },
  };
}

/** The exit code of a process ended by `signal` (128 + its number), as a shell reports it. */
export const exitCodeOf = (signal: string): number => 128 + (osConstants.signals[signal as NodeJS.Signals] ?? 0);
