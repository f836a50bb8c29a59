/**
 * Reconcile and the give-back paths against a file store and a run dir in temp dirs: what a dead VM held is
 * given back (and only that), a store that will not take a lease back keeps the run dir, a running VM keeps
 * its leases, and a whole reconcile (in a network namespace of the test's own, for its taps and guards) moves
 * everything to the truth and finds nothing more to do the second time.
 */
import { execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UncloudError } from '../../src/core/errors.js';
import { parsePool } from '../../src/core/mac.js';
import { nicAddresses } from '../../src/core/nic-allowed.js';
import { guardBatch } from '../../src/core/nic-guard-rules.js';
import { guardOptions, parseNic } from '../../src/core/nic-request.js';
import type { Owner } from '../../src/core/owner.js';
import { tapName } from '../../src/core/tap-name.js';
import { vmRunFiles } from '../../src/core/vm-files.js';
import { cleanupVm, giveBackAfterFailure, giveBackHeld, giveBackVm, type ReconcileReport, runningLeases } from '../../src/qemu/reconcile.js';
import { FileStore } from '../../src/store/file-store.js';
import type { VmRecord } from '../../src/system/run-dir.js';
import { currentOwner } from '../../src/system/proc.js';
import { ROOT } from '../helpers/cli.js';
import { createNetns, type Netns } from '../helpers/netns.js';
import { killAndWait } from '../helpers/process.js';
import { deadOwner, testUuid, writeRunDirVm } from '../helpers/run-dir-vm.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const HOST = 'h1';
const pool = parsePool('42:00:00');
const tmp = tempDirEachTest('uncloud-vm-reconcile-');
const started: ChildProcess[] = [];
afterEach(async () => {
  for (const c of started.splice(0)) if (c.pid) await killAndWait(c.pid);
});

const stateDir = (): string => join(tmp.path, 'state');
const runDir = (): string => join(tmp.path, 'run');
const store = (host = HOST): FileStore => new FileStore({ dir: stateDir(), host });
const me = currentOwner(process.pid)!;

/** A VM in the run dir with one leased NIC per MAC, owned by `owner` (its qemu when running). */
async function vmWithLeases(name: string, macs: string[], opts: { running?: boolean; launcher?: Owner; lease?: boolean } = {}): Promise<VmRecord> {
  const uuid = testUuid();
  const nics = macs.map((mac, index) => ({ index, mac, tap: tapName(uuid, index), bridge: 'br0' }));
  const rec = writeRunDirVm(runDir(), name, { uuid, nics, taps: nics.map((n) => n.tap), launcher: opts.launcher ?? deadOwner }, opts.running ? started : null);
  if (opts.lease !== false) {
    await store().allocate(pool, macs.map((mac, nic) => ({ vm: { uuid, name }, nic, owners: [rec.qemu ?? rec.launcher ?? deadOwner], mac })));
  }
  return rec;
}
const held = async (): Promise<string[]> => (await store().list()).leases.map((l) => `${l.mac} ${l.vm?.name ?? '-'}`);

describe('giving back what a VM held', () => {
  it('giveBackHeld frees the VM\'s own leases on this host only: not a MAC since given to another VM, not another host\'s', async () => {
    const rec = await vmWithLeases('web1', ['42:00:00:00:00:01', '42:00:00:00:00:02', '42:00:00:00:00:03']);
    // The second MAC was force-released and is another VM's now; the third is recorded for another host.
    await store().release('42:00:00:00:00:02');
    await store().allocate(pool, [{ vm: { uuid: testUuid(), name: 'db1' }, nic: 0, owners: [me], mac: '42:00:00:00:00:02' }]);
    await store().release('42:00:00:00:00:03');
    await store('h2').allocate(pool, [{ vm: { uuid: rec.uuid, name: 'web1' }, nic: 2, owners: [deadOwner], mac: '42:00:00:00:00:03' }]);
    const freed = await giveBackHeld(store(), HOST, rec);
    expect(freed.map((l) => l.mac)).toEqual(['42:00:00:00:00:01']);
    expect(await held()).toEqual(['42:00:00:00:00:02 db1', '42:00:00:00:00:03 web1']);
  });

  it('a store that will not take one back: the others are given back, then GIVE_BACK_FAILED names the MAC and the cause; giveBackVm keeps the run dir', async () => {
    const rec = await vmWithLeases('web1', ['42:00:00:00:00:01', '42:00:00:00:00:02']);
    const s = store();
    const failing = Object.assign(Object.create(s) as FileStore, {
      release: (mac: string, vm?: string) => (mac === '42:00:00:00:00:01' ? Promise.reject(new UncloudError('WRITE_FAILED', 'disk full')) : s.release(mac, vm)),
    });
    const err = await giveBackVm(failing, HOST, { files: vmRunFiles(runDir(), 'web1'), record: rec }).catch((e: unknown) => e);
    expect((err as UncloudError).code).toBe('GIVE_BACK_FAILED');
    expect((err as UncloudError).message).toMatch(/^VM web1 has ended, but the store did not take back 42:00:00:00:00:01 \(disk full\); its run dir stays/);
    expect(await held()).toEqual(['42:00:00:00:00:01 web1']);
    expect(existsSync(vmRunFiles(runDir(), 'web1').dir)).toBe(true);
    // On a path that is already failing, the same is told, not thrown.
    const notes: string[] = [];
    await giveBackAfterFailure(failing, HOST, { files: vmRunFiles(runDir(), 'web1'), record: rec }, (m) => notes.push(m));
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(/did not take back 42:00:00:00:00:01/);
  });

  it('a damaged lease record is left to the operator, not a failure', async () => {
    const rec = await vmWithLeases('web1', ['42:00:00:00:00:01']);
    const s = store();
    const damaged = Object.assign(Object.create(s) as FileStore, { get: () => Promise.reject(new UncloudError('STATE_DAMAGED', 'not valid JSON')) });
    expect(await giveBackVm(damaged, HOST, { files: vmRunFiles(runDir(), 'web1'), record: rec })).toEqual([]);
    expect(existsSync(vmRunFiles(runDir(), 'web1').dir)).toBe(false);
  });

  it.each([
    { what: 'running (its qemu lives)', running: true, launcher: deadOwner, even: false, cleaned: false },
    { what: 'starting (its launcher lives)', running: false, launcher: me, even: false, cleaned: false },
    { what: 'starting, but systemd ended the unit (evenIfStarting)', running: false, launcher: me, even: true, cleaned: true },
    { what: 'dead', running: false, launcher: deadOwner, even: false, cleaned: true },
  ])('cleanupVm of a VM that is $what: cleaned=$cleaned', async ({ running, launcher, even, cleaned }) => {
    await vmWithLeases('web1', ['42:00:00:00:00:01'], { running, launcher });
    const r = await cleanupVm(store(), runDir(), HOST, 'web1', even);
    if (cleaned) {
      expect(r?.map((l) => l.mac)).toEqual(['42:00:00:00:00:01']);
      expect(await held()).toEqual([]);
    } else {
      expect(r).toBeNull();
      expect(await held()).toEqual(['42:00:00:00:00:01 web1']);
    }
    expect(existsSync(vmRunFiles(runDir(), 'web1').dir)).toBe(!cleaned);
  });

  it('runningLeases: the leases of running VMs only, owned by their live qemu', async () => {
    const run = await vmWithLeases('web1', ['42:00:00:00:00:01', '42:00:00:00:00:02'], { running: true, lease: false });
    await vmWithLeases('old', ['42:00:00:00:00:03'], { lease: false });
    const leases = runningLeases(runDir(), HOST);
    expect(leases.map((l) => [l.mac, l.nic, l.host, l.vm, l.owners])).toEqual([
      ['42:00:00:00:00:01', 0, HOST, { uuid: run.uuid, name: 'web1' }, [run.qemu]],
      ['42:00:00:00:00:02', 1, HOST, { uuid: run.uuid, name: 'web1' }, [run.qemu]],
    ]);
  });
});

describe('reconcile, in a network namespace', () => {
  const run = promisify(execFile);
  const { NODE_EXTRA_CA_CERTS: _ca, ...childEnv } = process.env;
  let ns: Netns;
  beforeAll(() => {
    ns = createNetns(['br0']);
  });
  afterAll(() => ns.remove());

  const reconcileInNs = async (): Promise<ReconcileReport> =>
    JSON.parse((await run('ip', ['netns', 'exec', ns.name, process.execPath, join(ROOT, 'test/fixtures/reconcile.mjs'), stateDir(), runDir(), HOST], { env: childEnv })).stdout) as ReconcileReport;
  const guard = (iface: string): void => {
    const m = 0x420000000099;
    const file = join(tmp.path, `${iface}.nft`);
    writeFileSync(file, guardBatch(iface, m, nicAddresses(m, guardOptions(parseNic('br0', 0, 'br0')), { prefixes: [], source: 'none', ipv6Only: false }).allowed!));
    execFileSyncIn('nft', '-f', file);
  };
  const execFileSyncIn = (...argv: string[]): string => execFileSync('ip', ['netns', 'exec', ns.name, ...argv], { encoding: 'utf8' });
  const taps = (): string[] => (JSON.parse(ns.ip('-j', 'link', 'show')) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n.startsWith('uc')).sort();

  it('moves every kind of drift to the truth, and a second run finds nothing to do', async () => {
    // A running VM whose first lease vanished and whose second is still owned by its (gone) launcher.
    const live = await vmWithLeases('live', ['42:00:00:00:00:01', '42:00:00:00:00:02'], { running: true, lease: false });
    await store().allocate(pool, [{ vm: { uuid: live.uuid, name: 'live' }, nic: 1, owners: [deadOwner], mac: '42:00:00:00:00:02' }]);
    // A running VM whose MAC another VM holds meanwhile.
    await vmWithLeases('clash', ['42:00:00:00:00:03'], { running: true, lease: false });
    await store().allocate(pool, [{ vm: { uuid: testUuid(), name: 'thief' }, nic: 0, owners: [me], mac: '42:00:00:00:00:03' }]);
    // A dead VM with a lease, its tap (nothing holds it open) and its guard.
    const dead = await vmWithLeases('dead', ['42:00:00:00:00:04']);
    ns.ip('tuntap', 'add', dead.taps[0]!, 'mode', 'tap');
    guard(dead.taps[0]!);
    // A tap no VM reserved and nothing holds; a lease of no VM whose owner is gone; a guard whose tap is gone;
    // a dead VM whose record is damaged.
    ns.ip('tuntap', 'add', 'uc8888888888n0', 'mode', 'tap');
    await store().allocate(pool, [{ vm: { name: 'manual' }, nic: null, owners: [deadOwner], mac: '42:00:00:00:00:05' }]);
    guard('uc9999999999n0');
    mkdirSync(vmRunFiles(runDir(), 'broken').dir, { recursive: true });
    writeFileSync(vmRunFiles(runDir(), 'broken').record, '{"version": 1,');
    const old = new Date(Date.now() - 60_000);
    utimesSync(vmRunFiles(runDir(), 'broken').dir, old, old);
    // The running VM's reserved tap, not held open by anything: it stays.
    ns.ip('tuntap', 'add', live.taps[0]!, 'mode', 'tap');

    const r = await reconcileInNs();
    expect(r.recreated.map((l) => l.mac)).toEqual(['42:00:00:00:00:01']);
    expect(r.adopted.map((l) => l.mac)).toEqual(['42:00:00:00:00:02']);
    expect(r.conflicts.map((c) => [c.mac, c.vm.name, c.holder?.vm?.name])).toEqual([['42:00:00:00:00:03', 'clash', 'thief']]);
    expect(r.freed.map((l) => l.mac).sort()).toEqual(['42:00:00:00:00:04', '42:00:00:00:00:05']);
    expect(r.removedDirs.sort()).toEqual([expect.stringMatching(/^broken \(its record .* was damaged: not valid JSON\)$/), 'dead']);
    // The dead VM's tap and guard went with it; the sweep took what nobody reserved.
    expect(r.removedTaps).toEqual(['uc8888888888n0']);
    expect(r.removedGuards).toEqual(['uc9999999999n0']);
    expect(execFileSyncIn('nft', 'list', 'table', 'bridge', 'uncloud_vm')).not.toMatch(/"uc/);
    expect(r.failed).toEqual([]);
    expect(await held()).toEqual(['42:00:00:00:00:01 live', '42:00:00:00:00:02 live', '42:00:00:00:00:03 thief']);
    expect((await store().get('42:00:00:00:00:02'))?.owners).toEqual([live.qemu]);
    expect(taps()).toEqual([live.taps[0]]);
    expect(existsSync(vmRunFiles(runDir(), 'live').dir)).toBe(true);
    expect(existsSync(vmRunFiles(runDir(), 'clash').dir)).toBe(true);
    expect((await store().listConflicts()).conflicts.map((c) => c.mac)).toEqual(['42:00:00:00:00:03']);

    // Level-triggered: nothing left to move; the standing conflict is found again, not duplicated.
    const again = await reconcileInNs();
    expect({ ...again, conflicts: again.conflicts.map((c) => c.mac) }).toEqual({
      adopted: [], recreated: [], conflicts: ['42:00:00:00:00:03'], freed: [], removedDirs: [], removedGuards: [], removedTaps: [], damaged: [], endedVms: [], restoredActions: [], failed: [],
    });

    // The clash resolved (the thief's lease gone, the VM's own again): the conflict record is cleared.
    await store().release('42:00:00:00:00:03');
    const third = await reconcileInNs();
    expect(third.recreated.map((l) => l.mac)).toEqual(['42:00:00:00:00:03']);
    expect((await store().listConflicts()).conflicts).toEqual([]);
  });
});
