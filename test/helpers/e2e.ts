/**
 * The frame of every real-VM test file: the test guest, a network namespace with bridges for the file, and a
 * fresh state/run sandbox per test; whatever a failed test left running is killed after it.
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { sandbox, type Sandbox } from './cli.js';
import { buildGuest } from './guest.js';
import { createNetns, type Netns } from './netns.js';

export interface GuestEnv {
  ns: Netns;
  sb: Sandbox;
  guest: { kernel: string; initrd: string };
}

export function guestEnvironment(bridges: string[]): GuestEnv {
  const env = {} as GuestEnv;
  beforeAll(() => {
    env.guest = buildGuest();
    env.ns = createNetns(bridges);
  });
  afterAll(() => env.ns.remove());
  beforeEach(() => {
    env.sb = sandbox();
  });
  afterEach(() => {
    env.ns.killAll();
    env.sb.cleanup();
  });
  return env;
}
