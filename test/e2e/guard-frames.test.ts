/**
 * The NIC guard against crafted frames, with no VM: a "rogue" namespace whose veth is guarded by the same
 * ifup script a VM's tap gets (it only needs an interface name) sends a router advertisement, a forged ARP
 * reply and a forged neighbour advertisement with a raw socket (test/fixtures/send-frames.py); a victim
 * namespace on the same bridge accepts RAs and has neighbour entries for a peer. With the guard off each
 * frame takes effect (so the test can fail); with it on none does; after ifdown no element of the rogue is left.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseMac } from '../../src/core/mac.js';
import { nicAddresses } from '../../src/core/nic-allowed.js';
import { GUARD_TABLE, guardedIfaces } from '../../src/core/nic-guard-rules.js';
import { guardOptions, parseNic } from '../../src/core/nic-request.js';
import { renderIfdown, renderIfup } from '../../src/system/nic-scripts.js';
import { ROOT, waitFor } from '../helpers/cli.js';
import { createNetns, type Netns } from '../helpers/netns.js';

const SEND = join(ROOT, 'test/fixtures/send-frames.py');
const VICTIM = { mac: '42:00:00:00:aa:01', ip4: '10.66.0.2', ip6: 'fd66::2' };
const PEER = { mac: '42:00:00:00:aa:02', ip4: '10.66.0.1', ip6: 'fd66::1' };
const ROGUE = { mac: '42:00:00:00:aa:03', ip4: '10.66.0.3', ll: 'fe80::4000:ff:fe00:aa03', ip6: 'fd66::4000:ff:fe00:aa03' };

interface World {
  sw: Netns;
  ns: (who: 'v' | 'p' | 'r') => string;
  run: (who: 'v' | 'p' | 'r', ...cmd: string[]) => string;
  dir: string;
}

let w: World;

beforeEach(() => {
  const sw = createNetns(['br0']);
  const ns = (who: 'v' | 'p' | 'r') => `${sw.name}${who}`;
  const run = (who: 'v' | 'p' | 'r', ...cmd: string[]) => execFileSync('ip', ['netns', 'exec', ns(who), ...cmd], { encoding: 'utf8' });
  for (const [who, host] of [['v', VICTIM], ['p', PEER], ['r', ROGUE]] as const) {
    execFileSync('ip', ['netns', 'add', ns(who)]);
    sw.ip('link', 'add', `${who}h`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(who));
    run(who, 'sh', '-c', 'echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad; echo 0 > /proc/sys/net/ipv4/neigh/eth0/locktime');
    run(who, 'ip', 'link', 'set', 'eth0', 'address', host.mac);
    run(who, 'ip', 'addr', 'add', `${host.ip4}/24`, 'dev', 'eth0');
    run(who, 'ip', '-6', 'addr', 'add', `${host.ip6}/64`, 'dev', 'eth0', 'nodad');
    run(who, 'ip', 'link', 'set', 'eth0', 'up');
    if (who !== 'r') {
      sw.ip('link', 'set', `${who}h`, 'master', 'br0');
      sw.ip('link', 'set', `${who}h`, 'up');
    }
  }
  w = { sw, ns, run, dir: mkdtempSync(join(tmpdir(), 'hnet-frames-')) };
});

afterEach(() => {
  for (const who of ['v', 'p', 'r'] as const) spawnSync('ip', ['netns', 'del', w.ns(who)]);
  w.sw.remove();
  rmSync(w.dir, { recursive: true, force: true });
});

/** The rogue's host end, brought up by the rendered ifup script (guard on or off), as qemu would run it. */
function rogueScripts(guard: boolean): { up: () => void; down: () => void } {
  const nic = parseNic(guard ? `br0,ip4=${ROGUE.ip4}` : 'br0,filter=off', 0, 'br0');
  const addresses = nicAddresses(parseMac(ROGUE.mac), guardOptions(nic), { prefixes: ['fd66::/64'], source: 'config', ipv6Only: false });
  const input = { vm: 'rogue', index: 0, iface: 'rh', bridge: 'br0', mac: ROGUE.mac, addresses, guardMark: join(w.dir, 'guards', 'rh') };
  const up = join(w.dir, 'ifup.sh');
  const down = join(w.dir, 'ifdown.sh');
  writeFileSync(up, renderIfup(input), { mode: 0o700 });
  writeFileSync(down, renderIfdown(input), { mode: 0o700 });
  const runScript = (path: string) => execFileSync('ip', ['netns', 'exec', w.sw.name, 'sh', path, 'rh'], { encoding: 'utf8' });
  return { up: () => runScript(up), down: () => runScript(down) };
}

function guarded(): string[] {
  const r = spawnSync('ip', ['netns', 'exec', w.sw.name, 'nft', '-j', 'list', 'table', 'bridge', GUARD_TABLE], { encoding: 'utf8' });
  return r.status === 0 ? guardedIfaces(r.stdout) : [];
}

/** Frames on one path arrive in order: once the rogue's (allowed) ping gets through, what it sent before was handled. */
async function sync(): Promise<void> {
  await waitFor('a ping from the rogue to the victim', () => spawnSync('ip', ['netns', 'exec', w.ns('r'), 'ping', '-c', '1', '-W', '1', VICTIM.ip4]).status === 0);
}

/** The victim's neighbour entry for an address: its link-layer address. */
function neighbour(addr: string): string | undefined {
  const list = JSON.parse(w.run('v', 'ip', '-j', 'neigh', 'show', 'dev', 'eth0', 'to', addr)) as { lladdr?: string }[];
  return list[0]?.lladdr;
}

async function victimKnowsPeer(): Promise<void> {
  await waitFor('the victim reaching its peer', () => spawnSync('ip', ['netns', 'exec', w.ns('v'), 'ping', '-c', '1', '-W', '1', PEER.ip4]).status === 0);
  await waitFor('the victim reaching its peer over IPv6', () => spawnSync('ip', ['netns', 'exec', w.ns('v'), 'ping', '-6', '-c', '1', '-W', '1', PEER.ip6]).status === 0);
  expect(neighbour(PEER.ip4)).toBe(PEER.mac);
  expect(neighbour(PEER.ip6)).toBe(PEER.mac);
}

function send(...args: string[]): void {
  execFileSync('ip', ['netns', 'exec', w.ns('r'), 'python3', SEND, 'eth0', ...args]);
}

describe.each([
  ['on', true],
  ['off', false],
])('guard %s', (_name, guard) => {
  it(`a rogue router advertisement ${guard ? 'gives the victim no' : 'gives the victim an'} address and default route`, async () => {
    const rogue = rogueScripts(guard);
    rogue.up();
    send('ra', ROGUE.mac, ROGUE.ll, 'fd99::');
    await sync();
    const addrs = w.run('v', 'ip', '-6', 'addr', 'show', 'dev', 'eth0');
    const routes = w.run('v', 'ip', '-6', 'route', 'show', 'default');
    expect(addrs.includes('fd99:')).toBe(!guard);
    expect(routes.includes(ROGUE.ll)).toBe(!guard);
    rogue.down();
    expect(guarded()).toEqual([]);
  });

  it.each([
    // The rogue claims the peer's IPv4 address, from its own MAC.
    ['ARP reply', PEER.ip4, ['arp', ROGUE.mac, PEER.ip4, ROGUE.mac, VICTIM.ip4]],
    // From the rogue's own (allowed) link-local address and MAC, but for the peer's IPv6 address.
    ['neighbour advertisement', PEER.ip6, ['na', ROGUE.mac, ROGUE.ll, PEER.ip6, ROGUE.mac]],
  ])(`a forged %s ${guard ? 'leaves' : 'changes'} the victim's neighbour entry`, async (_kind, addr, frame) => {
    const rogue = rogueScripts(guard);
    rogue.up();
    await victimKnowsPeer();
    send(...frame);
    await sync();
    expect(neighbour(addr)).toBe(guard ? PEER.mac : ROGUE.mac);
    if (guard) expect(guarded()).toEqual(['rh']);
    rogue.down();
    expect(guarded()).toEqual([]);
  });
});
