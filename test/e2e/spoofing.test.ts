/**
 * Anti-spoofing on the bridge: a guest that sends with another MAC is dropped at its tap; with the filter off
 * the same impostor gets through; its own MAC always passes. Rules go away with the tap.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { GUARD_TABLE, guardedIfaces } from '../../src/core/nic-guard-rules.js';
import { cli } from '../helpers/cli.js';
import { guestEnvironment } from '../helpers/e2e.js';
import { bootGuest } from '../helpers/guest.js';

const e = guestEnvironment(['br0']);

/** Interfaces with a guard in the namespace's shared nft table. */
function guarded(): string[] {
  const r = spawnSync('ip', ['netns', 'exec', e.ns.name, 'nft', '-j', 'list', 'table', 'bridge', GUARD_TABLE], { encoding: 'utf8' });
  return r.status === 0 ? guardedIfaces(r.stdout) : [];
}

describe('anti-spoofing', () => {
  it.each([
    ['on', 'fail'],
    ['off', 'ok'],
  ])('filter=%s: an impostor MAC from the tap → ping %s; the honest peer is unaffected', async (filter, want) => {
    const honest = bootGuest(e.guest, e.sb, e.ns.name, `honest-${filter}`, { append: 'uc.ip.eth0=10.88.0.2/24' });
    await honest.waitSerial(/^UNCLOUD-READY/m);
    const impostor = bootGuest(e.guest, e.sb, e.ns.name, `impostor-${filter}`, {
      append: 'uc.ip.eth0=10.88.0.3/24 uc.spoof=42:00:00:00:ee:ee uc.ping=10.88.0.2 uc.pingtries=8',
      args: ['--nic', `bridge=br0,filter=${filter}`],
    });
    const m = await impostor.waitSerial(/^UNCLOUD-PING 10\.88\.0\.2 (ok|fail)/m, 90_000);
    expect(impostor.serial()).toMatch(/^UNCLOUD-SPOOF eth0 42:00:00:00:ee:ee/m);
    expect(m[1]).toBe(want);
    if (filter === 'on') expect(guarded()).toHaveLength(2);
    honest.child().kill('SIGTERM');
    impostor.child().kill('SIGTERM');
    await Promise.all([honest.done, impostor.done]);
    expect(guarded()).toEqual([]);
  });

  it('with the filter on, a guest using its own MAC reaches its peer', async () => {
    const a = bootGuest(e.guest, e.sb, e.ns.name, 'own-a', { append: 'uc.ip.eth0=10.89.0.2/24' });
    await a.waitSerial(/^UNCLOUD-READY/m);
    const b = bootGuest(e.guest, e.sb, e.ns.name, 'own-b', { append: 'uc.ip.eth0=10.89.0.3/24 uc.ping=10.89.0.2 uc.pingtries=30' });
    expect((await b.waitSerial(/^UNCLOUD-PING 10\.89\.0\.2 (ok|fail)/m, 90_000))[1]).toBe('ok');
    const list = JSON.parse((await cli(['mac', 'list', '--json'], { env: e.sb.env })).stdout);
    expect(list).toHaveLength(2);
  });
});
