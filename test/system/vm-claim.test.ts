/**
 * claimVm in a temp run dir: a live VM's name or UUID refused, a dead one's leftovers cleared, tap names no
 * live VM uses, the MACs other VMs use told, and of two claims of one name exactly one wins.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UncloudError } from '../../src/core/errors.js';
import { tapName } from '../../src/core/tap-name.js';
import { vmRunFiles } from '../../src/core/vm-files.js';
import { currentOwner } from '../../src/system/proc.js';
import type { VmRecord } from '../../src/system/run-dir.js';
import { type ClaimRequest, claimVm } from '../../src/system/vm-claim.js';
import { killAndWait } from '../helpers/process.js';
import { testUuid, writeRunDirVm } from '../helpers/run-dir-vm.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest('uncloud-vm-claim-');
const started: ChildProcess[] = [];
afterEach(async () => {
  for (const c of started.splice(0)) if (c.pid) await killAndWait(c.pid);
});

const me = currentOwner(process.pid)!;
const uuid = testUuid;

function request(name: string, over: Partial<ClaimRequest> = {}): ClaimRequest {
  const files = vmRunFiles(tmp.path, name);
  return { name, uuid: uuid(), nicIndices: [0], bridges: ['br0'], launcher: me, managedBy: 'launcher', files, qmpSocket: files.qmpSocket, serialLog: join(files.dir, 'serial.log'), ...over };
}

const existing = (name: string, rec: Partial<VmRecord>, running = false): VmRecord => writeRunDirVm(tmp.path, name, rec, running ? started : null);
const recordOf = (name: string): VmRecord => JSON.parse(readFileSync(vmRunFiles(tmp.path, name).record, 'utf8')) as VmRecord;

describe('claimVm', () => {
  it('a new VM: its run dir and record, taps from its UUID, bridges once each, nothing dead, no MACs in use', async () => {
    const req = request('web1', { nicIndices: [0, 1], bridges: ['br0', 'br0', 'br1'] });
    const r = await claimVm(tmp.path, req);
    expect(r.dead).toBeNull();
    expect(r.macsInUse.size).toBe(0);
    expect(r.record).toMatchObject({ name: 'web1', uuid: req.uuid, launcher: me, qemu: null, nics: [], bridges: ['br0', 'br1'], taps: [tapName(req.uuid, 0), tapName(req.uuid, 1)] });
    expect(recordOf('web1')).toEqual(r.record);
  });

  it.each([
    { what: 'starting (its launcher lives)', rec: { launcher: me }, running: false, msg: /^VM web1 is already starting \(pid \d+\); stop it first or pick another --name$/ },
    { what: 'running (its qemu lives)', rec: {}, running: true, msg: /^VM web1 is already running \(pid \d+\); stop it first or pick another --name$/ },
  ])('the name of a VM that is $what: VM_RUNNING, its run dir untouched', async ({ rec, running, msg }) => {
    const before = existing('web1', rec, running);
    const err = await claimVm(tmp.path, request('web1')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UncloudError);
    expect((err as UncloudError).code).toBe('VM_RUNNING');
    expect((err as UncloudError).message).toMatch(msg);
    expect(recordOf('web1')).toEqual(before);
  });

  it('the UUID of another live VM: UUID_IN_USE (exit 1), nothing created', async () => {
    const other = existing('db1', { launcher: me });
    const err = await claimVm(tmp.path, request('web1', { uuid: other.uuid })).catch((e: unknown) => e);
    expect((err as UncloudError).code).toBe('UUID_IN_USE');
    expect((err as UncloudError).exitCode).toBe(1);
    expect((err as UncloudError).message).toBe(`UUID ${other.uuid} is already used by VM db1 (starting); pick another --uuid`);
    expect(existsSync(vmRunFiles(tmp.path, 'web1').dir)).toBe(false);
  });

  it('a dead VM of the same name: its leftovers cleared and returned, the new record in their place', async () => {
    const old = existing('web1', {});
    writeFileSync(join(vmRunFiles(tmp.path, 'web1').dir, 'leftover'), 'x');
    const req = request('web1');
    const r = await claimVm(tmp.path, req);
    expect(r.dead?.record).toEqual(old);
    expect(r.dead?.phase).toBe('dead');
    expect(recordOf('web1').uuid).toBe(req.uuid);
    expect(existsSync(join(vmRunFiles(tmp.path, 'web1').dir, 'leftover'))).toBe(false);
  });

  it('a dead VM\'s UUID may be taken again, and its taps are not reserved', async () => {
    const old = existing('db1', {});
    const r = await claimVm(tmp.path, request('web1', { uuid: old.uuid }));
    expect(r.record.taps).toEqual([tapName(old.uuid, 0)]);
  });

  it('taps a live VM reserved (a UUID sharing the first ten digits): the next attempt\'s names', async () => {
    const u = uuid();
    existing('db1', { launcher: me, taps: [tapName(u, 0)] });
    const r = await claimVm(tmp.path, request('web1', { uuid: `${u.slice(0, 10)}99-9999-4999-8999-999999999999` }));
    expect(r.record.taps[0]).not.toBe(tapName(u, 0));
    expect(r.record.taps[0]).toMatch(/^uc[0-9a-f]{10}n0$/);
  });

  it('the MACs of other live VMs, by VM; a dead VM\'s are not in use', async () => {
    const nic = (mac: string, i: number) => ({ index: i, mac, tap: `uc000000000${i}n${i}`, bridge: 'br0' });
    existing('db1', { launcher: me, nics: [nic('42:00:00:00:00:01', 0), nic('42:00:00:00:00:02', 1)] });
    existing('old', { nics: [nic('42:00:00:00:00:03', 0)] });
    const r = await claimVm(tmp.path, request('web1'));
    expect([...r.macsInUse].sort()).toEqual([
      ['42:00:00:00:00:01', 'db1'],
      ['42:00:00:00:00:02', 'db1'],
    ]);
  });

  it('two claims of one name at once: exactly one wins, the other is told it is starting', async () => {
    const results = await Promise.allSettled([claimVm(tmp.path, request('web1')), claimVm(tmp.path, request('web1'))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((lost.reason as UncloudError).code).toBe('VM_RUNNING');
  });
});
