/**
 * system/network.ts in a network namespace of the test's own: a network's VXLAN device and bridge made once
 * however many ensure at once, a half-made network completed, devices of another kind under our names refused,
 * and removal refused while a tap or a VM of this host uses the network.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { vmRunFiles } from '../../src/core/vm-files.js';
import type { VmRecord } from '../../src/system/run-dir.js';
import { currentOwner } from '../../src/system/proc.js';
import { callInNetns, runInNetns } from '../helpers/call-in-netns.js';
import { ROOT } from '../helpers/cli.js';
import { createNetns, type Netns } from '../helpers/netns.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest('uncloud-vm-network-');
let ns: Netns;
beforeAll(() => {
  ns = createNetns([]);
  // The underlay: one end of a veth pair with an IPv6 address and MTU 1500.
  ns.ip('link', 'add', 'underlay', 'type', 'veth', 'peer', 'name', 'underlay-peer');
  ns.ip('addr', 'add', 'fd00::1/64', 'dev', 'underlay', 'nodad');
  ns.ip('link', 'set', 'underlay', 'up');
  ns.ip('link', 'set', 'underlay-peer', 'up');
});
afterAll(() => ns.remove());
afterEach(() => {
  for (const l of links()) {
    if (!/^uc(br|vx)\d+$/.test(l.ifname)) continue;
    try {
      ns.ip('link', 'delete', l.ifname);
    } catch {
      // a veth's peer, gone with it
    }
  }
});

const settings = { vxlanDev: 'underlay' };
/** One function of the built system/network.js, run inside the namespace. */
const call = <T>(fn: string, ...args: unknown[]) => callInNetns<T>(ns, 'system/network.js', fn, ...args);
async function ok<T>(fn: string, ...args: unknown[]): Promise<T> {
  const r = await call<T>(fn, ...args);
  if ('error' in r) throw new Error(`${fn}: ${r.error.code}: ${r.error.message}`);
  return r.ok;
}

interface Link {
  ifname: string;
  master?: string;
  mtu: number;
  flags: string[];
  linkinfo?: { info_kind: string; info_data?: { id?: number } };
}
const links = (): Link[] => JSON.parse(ns.ip('-d', '-j', 'link', 'show')) as Link[];
const link = (name: string): Link | undefined => links().find((l) => l.ifname === name);

interface Ensured {
  mtu: number;
  created: string[];
}

describe('ensureNetwork', () => {
  it('makes the VXLAN device and the bridge, joined and up, with the underlay\'s MTU less VXLAN\'s overhead; again: nothing made', async () => {
    const first = await ok<Ensured>('ensureNetwork', 42, settings);
    expect(first).toMatchObject({ mtu: 1430, created: ['ucvx42', 'ucbr42'] });
    const vx = link('ucvx42')!;
    expect(vx).toMatchObject({ master: 'ucbr42', mtu: 1430, linkinfo: { info_kind: 'vxlan', info_data: { id: 42 } } });
    expect(vx.flags).toContain('UP');
    expect(link('ucbr42')!.flags).toContain('UP');
    expect(await ok<Ensured>('ensureNetwork', 42, settings)).toMatchObject({ mtu: 1430, created: [] });
  });

  it('six at once: every one succeeds, and each device is made by exactly one', async () => {
    const all = await Promise.all(Array.from({ length: 6 }, () => ok<Ensured>('ensureNetwork', 43, settings)));
    expect(all.flatMap((e) => e.created).sort()).toEqual(['ucbr43', 'ucvx43']);
    expect(link('ucvx43')?.master).toBe('ucbr43');
  });

  it('a half-made network (VXLAN device down, no bridge): completed, only the bridge made', async () => {
    ns.ip('link', 'add', 'ucvx44', 'mtu', '1400', 'type', 'vxlan', 'id', '44', 'dstport', '4789', 'group', 'ff05::2c', 'dev', 'underlay');
    const e = await ok<Ensured>('ensureNetwork', 44, settings);
    // The guests get the MTU the VXLAN device has, not the one a new device would get.
    expect(e).toMatchObject({ created: ['ucbr44'], mtu: 1400 });
    expect(link('ucvx44')).toMatchObject({ master: 'ucbr44' });
    expect(link('ucvx44')!.flags).toContain('UP');
  });

  it('our VXLAN device enslaved to another bridge: moved to the network\'s bridge', async () => {
    await ok('ensureNetwork', 45, settings);
    ns.ip('link', 'add', 'ucbr99', 'type', 'bridge');
    ns.ip('link', 'set', 'ucvx45', 'master', 'ucbr99');
    expect(await ok<Ensured>('ensureNetwork', 45, settings)).toMatchObject({ created: [] });
    expect(link('ucvx45')?.master).toBe('ucbr45');
  });

  it.each([
    { what: 'a VXLAN device with another VNI', make: ['link', 'add', 'ucvx46', 'type', 'vxlan', 'id', '47', 'dstport', '4789', 'local', 'fd00::1'], msg: /^network 46: device ucvx46 exists but is not VXLAN with VNI 46; remove it or use another network id$/ },
    { what: 'a veth under the VXLAN device\'s name', make: ['link', 'add', 'ucvx46', 'type', 'veth', 'peer', 'name', 'other46'], msg: /device ucvx46 exists but is not VXLAN with VNI 46/ },
    { what: 'a veth under the bridge\'s name', make: ['link', 'add', 'ucbr46', 'type', 'veth', 'peer', 'name', 'other46'], msg: /^network 46: device ucbr46 exists but is not a bridge; remove it or use another network id$/ },
  ])('$what: NETWORK_CONFLICT, and the foreign device is left as it was', async ({ make, msg }) => {
    ns.ip(...make);
    const r = await call('ensureNetwork', 46, settings);
    expect(r).toMatchObject({ error: { code: 'NETWORK_CONFLICT' } });
    expect((r as { error: { message: string } }).error.message).toMatch(msg);
    expect(link(make[2]!)!.linkinfo?.info_kind).toBe(make[4]);
  });

  it('an underlay device that does not exist: NO_UNDERLAY, nothing made', async () => {
    expect(await call('ensureNetwork', 48, { vxlanDev: 'nosuchdev' })).toMatchObject({ error: { code: 'NO_UNDERLAY', message: 'underlay device nosuchdev (vxlanDev) does not exist on this host' } });
    expect(link('ucvx48')).toBeUndefined();
    expect(link('ucbr48')).toBeUndefined();
  });

  it('static peers: one all-zeros FDB entry per peer, and a second ensure of a half-made one adds none twice', async () => {
    const peers = { vxlanLocal: 'fd00::1', vxlanPeers: 'fd00::2,fd00::3' };
    await ok('ensureNetwork', 49, peers);
    ns.ip('link', 'set', 'ucbr49', 'down');
    await ok('ensureNetwork', 49, peers);
    const fdb = execFileText('bridge', '-j', 'fdb', 'show', 'dev', 'ucvx49');
    const dsts = (JSON.parse(fdb) as { mac: string; dst?: string }[]).filter((f) => f.mac === '00:00:00:00:00:00').map((f) => f.dst);
    expect(dsts.sort()).toEqual(['fd00::2', 'fd00::3']);
    expect(link('ucbr49')!.flags).toContain('UP');
  });
});

function execFileText(cmd: string, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns.name, cmd, ...args], { encoding: 'utf8' });
}

describe('describe, list, remove', () => {
  const record = (name: string, bridges: string[]): void => {
    const runDir = tmp.path;
    const files = vmRunFiles(runDir, name);
    mkdirSync(files.dir, { recursive: true });
    const rec: VmRecord = {
      version: 1, name, uuid: '00000000-0000-4000-8000-000000000001', launcher: currentOwner(process.pid), qemu: null, managedBy: 'launcher',
      taps: [], bridges, nics: [], started: new Date().toISOString(), qmpSocket: join(files.dir, 'qmp.sock'), serialLog: join(files.dir, 'serial.log'),
    };
    writeFileSync(files.record, JSON.stringify(rec));
  };

  it('no devices: describe gives null, rm is NO_NETWORK', async () => {
    expect(await ok('describeNetwork', 50, tmp.path)).toBeNull();
    expect(await call('removeNetwork', 50, tmp.path)).toMatchObject({ error: { code: 'NO_NETWORK' } });
  });

  it('describe and list: ours only, by id, with VNI, group, underlay and MTU', async () => {
    await ok('ensureNetwork', 52, settings);
    await ok('ensureNetwork', 51, settings);
    ns.ip('link', 'add', 'ucbr0', 'type', 'veth', 'peer', 'name', 'ucvx01'); // not ours: no network 0, no leading zero
    const list = await ok<{ id: number }[]>('listNetworks', tmp.path);
    expect(list.map((n) => n.id)).toEqual([51, 52]);
    expect(await ok('describeNetwork', 51, tmp.path)).toEqual({
      id: 51, bridge: 'ucbr51', vxlan: 'ucvx51', vni: 51, group: 'ff05::33', peers: [], underlay: 'underlay', local: null, port: 4789, mtu: 1430, up: true, ports: [], vms: [],
    });
  });

  it('rm while a tap is on the bridge: NETWORK_IN_USE naming it, nothing removed; once it is gone: both removed', async () => {
    await ok('ensureNetwork', 53, settings);
    ns.ip('tuntap', 'add', 'uc0123456789n0', 'mode', 'tap');
    ns.ip('link', 'set', 'uc0123456789n0', 'master', 'ucbr53');
    const r = await call('removeNetwork', 53, tmp.path);
    expect(r).toMatchObject({ error: { code: 'NETWORK_IN_USE', message: 'network 53 is in use (ports uc0123456789n0); stop its VMs first' } });
    expect(link('ucbr53')).toBeDefined();
    ns.ip('link', 'delete', 'uc0123456789n0');
    expect(await ok('removeNetwork', 53, tmp.path)).toMatchObject({ id: 53, bridge: 'ucbr53', vxlan: 'ucvx53' });
    expect(link('ucbr53')).toBeUndefined();
    expect(link('ucvx53')).toBeUndefined();
  });

  it('rm while a starting VM of this host names the bridge: NETWORK_IN_USE; a dead VM\'s record does not keep it', async () => {
    await ok('ensureNetwork', 54, settings);
    record('web1', ['ucbr54']);
    expect(await call('removeNetwork', 54, tmp.path)).toMatchObject({ error: { code: 'NETWORK_IN_USE', message: 'network 54 is in use (VM web1); stop its VMs first' } });
    expect(link('ucvx54')).toBeDefined();
    // The same record with a launcher that is gone: a dead VM.
    const files = vmRunFiles(tmp.path, 'web1');
    const rec = JSON.parse(readFileSync(files.record, 'utf8')) as VmRecord;
    writeFileSync(files.record, JSON.stringify({ ...rec, launcher: { pid: process.pid, startTime: -1 } }));
    const old = new Date(Date.now() - 60_000);
    utimesSync(files.dir, old, old);
    expect(await ok('removeNetwork', 54, tmp.path)).toMatchObject({ id: 54, vms: [] });
  });

  it('rm of a half-made network (bridge only): removes what is there', async () => {
    ns.ip('link', 'add', 'ucbr55', 'type', 'bridge');
    expect(await ok('removeNetwork', 55, tmp.path)).toMatchObject({ bridge: 'ucbr55', vxlan: null });
    expect(link('ucbr55')).toBeUndefined();
  });
});

describe('prepareNetworks', () => {
  it('dry run: plans, names what start would create, sets each NIC\'s MTU, makes nothing', async () => {
    const script = `
      import { prepareNetworks } from ${JSON.stringify(join(ROOT, 'dist/system/network.js'))};
      const plan = { nics: [{ network: 56 }, { network: 56 }, {}] };
      const notes = [];
      prepareNetworks(plan, { vxlanDev: 'underlay', vxlanMtu: '1380' }, (m) => notes.push(m), true);
      process.stdout.write(JSON.stringify({ nics: plan.nics, notes }));
    `;
    expect(JSON.parse(await runInNetns(ns, script))).toEqual({
      nics: [{ network: 56, mtu: 1380 }, { network: 56, mtu: 1380 }, {}],
      notes: ['network 56: start would create bridge ucbr56 and VXLAN ucvx56 (VNI 56, multicast ff05::38, MTU 1380)'],
    });
    expect(link('ucbr56')).toBeUndefined();
    expect(link('ucvx56')).toBeUndefined();
  });
});
