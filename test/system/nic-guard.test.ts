/**
 * system/nic-guard.ts in a network namespace of the test's own: taps and guards listed, one NIC's guard removed
 * without touching another's, a guard whose tap is gone cleaned up, nothing that is not ours touched, and
 * every removal idempotent and quiet.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseMac } from '../../src/core/mac.js';
import { nicAddresses } from '../../src/core/nic-allowed.js';
import { GUARD_TABLE, guardBatch } from '../../src/core/nic-guard-rules.js';
import { guardOptions, parseNic } from '../../src/core/nic-request.js';
import { guardMarkPath } from '../../src/system/nic-guard.js';
import { callInNetns, runInNetns } from '../helpers/call-in-netns.js';
import { ROOT } from '../helpers/cli.js';
import { createNetns, type Netns } from '../helpers/netns.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest('uncloud-vm-nic-guard-');
let ns: Netns;
beforeAll(() => {
  ns = createNetns(['br0']);
});
afterAll(() => ns.remove());
afterEach(() => {
  inNs('nft', 'delete', 'table', 'bridge', GUARD_TABLE, { quiet: true });
  for (const l of JSON.parse(ns.ip('-j', 'link', 'show')) as { ifname: string }[]) if (l.ifname !== 'lo' && l.ifname !== 'br0') ns.ip('link', 'delete', l.ifname);
});

const TAP0 = 'uc0123456789n0';
const TAP1 = 'uc0123456789n1';

function inNs(...args: (string | { quiet: boolean })[]): string {
  const quiet = typeof args.at(-1) === 'object';
  const argv = args.filter((a): a is string => typeof a === 'string');
  try {
    return execFileSync('ip', ['netns', 'exec', ns.name, ...argv], { encoding: 'utf8', stdio: ['ignore', 'pipe', quiet ? 'ignore' : 'inherit'] });
  } catch (err) {
    if (quiet) return '';
    throw err;
  }
}

/** The guard ifup.sh installs for an interface, with the NIC's MAC. */
function guard(iface: string, mac: string): void {
  const m = parseMac(mac);
  const file = join(tmp.path, `${iface}.nft`);
  writeFileSync(file, guardBatch(iface, m, nicAddresses(m, guardOptions(parseNic('br0', 0, 'br0')), { prefixes: [], source: 'none', ipv6Only: false }).allowed!));
  inNs('nft', '-f', file);
}
const tap = (name: string): void => {
  ns.ip('tuntap', 'add', name, 'mode', 'tap');
  ns.ip('link', 'set', name, 'master', 'br0');
};

/** One function of the built system/nic-guard.js, run inside the namespace. */
async function call(fn: string, ...args: unknown[]): Promise<unknown> {
  const r = await callInNetns(ns, 'system/nic-guard.js', fn, ...args);
  if ('error' in r) throw new Error(`${fn} threw: ${JSON.stringify(r.error)}`);
  return r.ok;
}
const sorted = async (fn: string): Promise<string[]> => ((await call(fn)) as string[]).sort();
/** Every element of the guard's sets that names the interface (the whole of its guard). */
const elementsOf = (iface: string): number => (inNs('nft', 'list', 'table', 'bridge', GUARD_TABLE, { quiet: true }).match(new RegExp(`"${iface}"`, 'g')) ?? []).length;

describe('listing', () => {
  it('no guard table at all: no guarded taps; taps are listed by name pattern only', async () => {
    tap(TAP0);
    ns.ip('tuntap', 'add', 'othertap0', 'mode', 'tap');
    expect(await sorted('listGuardedTaps')).toEqual([]);
    expect(await sorted('listTaps')).toEqual([TAP0]);
  });

  it('guarded taps: ours only, including one whose tap is gone', async () => {
    tap(TAP0);
    guard(TAP0, '42:00:00:00:00:01');
    guard(TAP1, '42:00:00:00:00:02'); // its tap is gone (qemu was SIGKILLed)
    guard('veth_other', '42:00:00:00:00:03'); // not a VM's tap
    expect(await sorted('listGuardedTaps')).toEqual([TAP0, TAP1]);
    expect(await sorted('listTaps')).toEqual([TAP0]);
  });
});

describe('removal', () => {
  it('one NIC\'s guard goes whole; the other NIC\'s stays whole; again is a quiet no-op', async () => {
    guard(TAP0, '42:00:00:00:00:01');
    guard(TAP1, '42:00:00:00:00:02');
    const before1 = elementsOf(TAP1);
    expect(elementsOf(TAP0)).toBeGreaterThan(2);
    await call('removeNicGuard', TAP0);
    expect(elementsOf(TAP0)).toBe(0);
    expect(elementsOf(TAP1)).toBe(before1);
    expect(await sorted('listGuardedTaps')).toEqual([TAP1]);
    await call('removeNicGuard', TAP0);
    expect(elementsOf(TAP1)).toBe(before1);
  });

  it('a guard whose tap is gone: removeNicLeftovers removes the guard, and the tap that is there', async () => {
    tap(TAP0);
    guard(TAP0, '42:00:00:00:00:01');
    guard(TAP1, '42:00:00:00:00:02');
    await call('removeNicLeftovers', [TAP0, TAP1]);
    expect(await sorted('listGuardedTaps')).toEqual([]);
    expect(await sorted('listTaps')).toEqual([]);
  });

  it('names that are not a VM\'s tap are never touched by the NIC functions', async () => {
    ns.ip('tuntap', 'add', 'othertap0', 'mode', 'tap');
    guard('veth_other', '42:00:00:00:00:03');
    await call('removeNicLeftovers', ['othertap0', 'veth_other', 'br0']);
    await call('removeTap', 'br0');
    expect(elementsOf('veth_other')).toBeGreaterThan(0);
    expect(JSON.parse(ns.ip('-j', 'link', 'show')).map((l: { ifname: string }) => l.ifname)).toEqual(expect.arrayContaining(['br0', 'othertap0']));
    // removeGuard takes any name nft can hold, and only those.
    await call('removeGuard', 'bad"name');
    expect(elementsOf('veth_other')).toBeGreaterThan(0);
    await call('removeGuard', 'veth_other');
    expect(elementsOf('veth_other')).toBe(0);
  });

  it('removal writes no temp file (a gc or stop killed meanwhile would leave it behind): it works with no temp dir at all', async () => {
    guard(TAP0, '42:00:00:00:00:01');
    const dist = join(ROOT, 'dist/system/nic-guard.js');
    const src = `process.env.TMPDIR = ${JSON.stringify(join(tmp.path, 'none'))}; const m = await import(${JSON.stringify(dist)}); console.log(m.removeNicGuard(${JSON.stringify(TAP0)}));`;
    expect((await runInNetns(ns, src)).trim()).toBe('true');
    expect(elementsOf(TAP0)).toBe(0);
  });

  it('removeNicGuard says whether the guard is gone: true once removed, true when there was none, true for a name that is not a tap', async () => {
    guard(TAP0, '42:00:00:00:00:01');
    expect(await call('removeNicGuard', TAP0)).toBe(true);
    expect(await call('removeNicGuard', TAP0)).toBe(true);
    expect(await call('removeNicGuard', 'br0')).toBe(true);
  });

  it('removeStaleGuard: an unmarked tap is left alone; a marked one loses its guard and its mark; a known one without a mark too', async () => {
    const runDir = tmp.path;
    const mark = guardMarkPath(runDir, TAP0);
    guard(TAP0, '42:00:00:00:00:01');
    await call('removeStaleGuard', runDir, TAP0);
    expect(elementsOf(TAP0)).toBeGreaterThan(0);
    mkdirSync(dirname(mark));
    writeFileSync(mark, '');
    await call('removeStaleGuard', runDir, TAP0);
    expect(elementsOf(TAP0)).toBe(0);
    expect(existsSync(mark)).toBe(false);
    guard(TAP1, '42:00:00:00:00:02');
    await call('removeStaleGuard', runDir, TAP1, true);
    expect(elementsOf(TAP1)).toBe(0);
  });

  it('with no guard table and no taps: every removal is quiet', async () => {
    await call('removeNicLeftovers', [TAP0]);
    await call('removeNicGuard', TAP1);
    await call('removeTap', TAP1);
    expect(await sorted('listGuardedTaps')).toEqual([]);
  });
});
