/**
 * Failure paths an operator hits without planning to, one named regression test each (the crash-proof
 * issue's list), through the built CLI with a fake qemu that serves QMP, in a namespace with a bridge.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';
import { checkInvariants, liveQemus } from '../helpers/invariants.js';
import { killAndWait } from '../helpers/process.js';

const fake = fakeQemuEnvironment({ env: { FAKE_QEMU_QMP: '1', FAKE_QEMU_SLEEP: '600' } });
const { run, start, leases } = fake;
const invariants = async () => checkInvariants({ runDir: fake.sb.runDir, leases: await leases() });

describe('crash paths converge', () => {
  it('#2 a launcher SIGKILLed while a detached qemu starts: the leases stay, owned by the running qemu', async () => {
    let launcher = 0;
    // The fake qemu answers QMP only after 3 s, so the launcher is still waiting when it is killed.
    const p = start(['--name', 'early', '--detach'], { FAKE_QEMU_QMP: '0' }, (c) => (launcher = c.pid!));
    await waitFor('qemu running', () => liveQemus(fake.sb.runDir).length === 1);
    process.kill(launcher, 'SIGKILL');
    await p;
    const q = liveQemus(fake.sb.runDir)[0]!;
    expect((await run(['gc'])).code).toBe(0);
    const held = await leases();
    expect(held).toHaveLength(1);
    expect(held[0]!.owners.map((o) => o.pid)).toContain(q.pid);
    expect(held[0]!.state).toBe('live');
    expect((await invariants()).violations).toEqual([]);
    // Long after the launcher, gc still leaves the VM's run dir alone.
    expect(existsSync(join(fake.sb.runDir, 'early', 'vm.json'))).toBe(true);
  });

  it('#2 a foreground launcher SIGKILLed: gc keeps what its qemu holds; after qemu is killed too, gc frees it', async () => {
    let launcher = 0;
    void start(['--name', 'fg'], {}, (c) => (launcher = c.pid!));
    await waitFor('qemu running', () => liveQemus(fake.sb.runDir).length === 1);
    await killAndWait(launcher);
    await run(['gc']);
    expect((await invariants()).violations).toEqual([]);
    expect(await leases()).toHaveLength(1);
    process.kill(liveQemus(fake.sb.runDir)[0]!.pid, 'SIGKILL');
    await waitFor('qemu gone', () => liveQemus(fake.sb.runDir).length === 0);
    const gc = await run(['gc']);
    expect(gc.stdout).toMatch(/freed 42:00:00:00:00:01 \(VM fg nic0\)/);
    expect(gc.stdout).toMatch(/removed run dir fg/);
    expect(await leases()).toEqual([]);
    expect((await invariants()).violations).toEqual([]);
  });

  it.each([
    { what: 'empty', text: () => '' },
    { what: 'as its claim wrote it (no MACs, no qemu)', text: (rec: { nics: unknown[]; qemu: unknown }) => JSON.stringify({ ...rec, nics: [], qemu: null }) },
  ])('a power loss leaves a VM record (not fsynced) $what, every process of the boot gone: gc frees the lease and removes the run dir', async ({ text }) => {
    let launcher = 0;
    void start(['--name', 'pl'], {}, (c) => (launcher = c.pid!));
    await waitFor('qemu running', () => liveQemus(fake.sb.runDir).length === 1);
    const qemu = liveQemus(fake.sb.runDir)[0]!.pid;
    await killAndWait(launcher);
    await killAndWait(qemu);
    const record = join(fake.sb.runDir, 'pl', 'vm.json');
    writeFileSync(record, text(JSON.parse(readFileSync(record, 'utf8')) as { nics: unknown[]; qemu: unknown }));
    // A reboot takes longer than a claim may (a record-less dir younger than that is left to its claimer).
    const before = new Date(Date.now() - 60_000);
    utimesSync(join(fake.sb.runDir, 'pl'), before, before);
    const gc = await run(['gc']);
    expect(gc.stdout).toMatch(/freed 42:00:00:00:00:01 \(VM pl nic0\)/);
    expect(gc.stdout).toMatch(/removed run dir pl/);
    expect(await leases()).toEqual([]);
    expect(existsSync(join(fake.sb.runDir, 'pl'))).toBe(false);
    expect((await invariants()).violations).toEqual([]);
  });

  it('#3 two concurrent starts of one name: exactly one wins, the other is told so', async () => {
    for (let trial = 0; trial < 4; trial++) {
      const name = `twin${trial}`;
      const [a, b] = await Promise.all([start(['--name', name, '--detach']), start(['--name', name, '--detach'])]);
      const codes = [a.code, b.code].sort();
      expect(codes, `${a.stderr}\n${b.stderr}`).toEqual([0, 1]);
      const loser = a.code === 1 ? a : b;
      expect(loser.stderr).toMatch(new RegExp(`VM ${name} is already (starting|running)`));
      expect(loser.stderr).not.toMatch(/ENOENT|ENOTEMPTY|EEXIST|bug/);
      expect(liveQemus(fake.sb.runDir).filter((q) => q.name === name)).toHaveLength(1);
    }
    expect((await invariants()).violations).toEqual([]);
  });

  it('#5 mac release refuses a running VM\'s MAC; after --force no other VM here can take it, and gc restores the lease', async () => {
    expect((await start(['--name', 'r1', '--detach'])).code).toBe(0);
    const mac = (await leases())[0]!.mac;
    const r = await run(['mac', 'release', mac]);
    expect(r.code).toBe(1);
    expect(r.stderr, r.stderr).toMatch(new RegExp(`MAC ${mac} is in use by running VM r1 \\(pid [0-9,]+\\); stop the VM instead, or pass --force`));
    expect(await leases()).toHaveLength(1);
    expect((await run(['mac', 'release', mac, '--force'])).code).toBe(0);
    expect(await leases()).toEqual([]);
    // The store forgot it, this host did not: a second VM asking for that MAC is refused.
    const thief = await start(['--name', 'r2', '--detach', '--nic', `bridge=br0,mac=${mac}`]);
    expect(thief.code).toBe(1);
    expect(thief.stderr).toMatch(new RegExp(`MAC ${mac} is used by VM r1, running on this host; pick another`));
    const gc = await run(['gc']);
    expect(gc.stdout).toMatch(new RegExp(`restored ${mac} \\(VM r1 nic0\\): its running qemu uses it`));
    expect((await leases()).map((l) => [l.mac, l.state])).toEqual([[mac, 'live']]);
    expect((await invariants()).violations).toEqual([]);
  });

  it('#6 a damaged lease among others: stop and gc still give back every other VM\'s leases', async () => {
    expect((await start(['--name', 'd1', '--detach'])).code).toBe(0);
    expect((await start(['--name', 'd2', '--detach'])).code).toBe(0);
    const [a, b] = (await leases()).map((l) => l.mac);
    writeFileSync(join(fake.sb.stateDir, 'leases', `${b!.replaceAll(':', '')}.json`), '');
    const stop = await run(['stop', 'd1', '--timeout', '5']);
    expect(stop.code, stop.stderr).toBe(0);
    expect((await leases()).map((l) => l.mac)).not.toContain(a);
    expect(existsSync(join(fake.sb.runDir, 'd1'))).toBe(false);
  });

  it('a damaged identity among others: list shows the rest and names it; forget removes it', async () => {
    expect((await start(['--name', 'a', '--detach'])).code).toBe(0);
    expect((await run(['stop', 'a', '--timeout', '5'])).code).toBe(0);
    expect((await start(['--name', 'b', '--detach'])).code).toBe(0);
    const path = join(fake.sb.stateDir, 'vms', 'a.json');
    writeFileSync(path, '{"version":1,"name":"a","uuid":"not-a-uuid","macs":["zz"]}');
    const list = await run(['list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^b\s+running/m);
    expect(list.stderr).toBe(`uncloud-vm: damaged record skipped: VM record ${path} is damaged (bad name or uuid); it was left untouched: repair or remove it\n`);
    expect(JSON.parse((await run(['list', '--json'])).stdout).map((v: { name: string }) => v.name)).toEqual(['b']);
    const forget = await run(['forget', 'a']);
    expect(forget.code, forget.stderr).toBe(0);
    expect(forget.stderr).toBe('uncloud-vm: forgot VM a: its damaged record; logs\n');
    expect(existsSync(path)).toBe(false);
    expect((await run(['list'])).stderr).toBe('');
  });

  it('a damaged pool cursor (outside its prefix) is named as damaged state, exit 1, not blamed on the user', async () => {
    const pool = join(fake.sb.stateDir, 'pool.json');
    mkdirSync(fake.sb.stateDir, { recursive: true });
    writeFileSync(pool, '{"version":1,"cursors":{"42:00:00":"ff:ff:ff:ff:ff:ff"}}');
    for (const args of [['mac', 'allocate'], ['start', '--accel', 'tcg', '--memory', '64', '--detach']]) {
      const r = await run(args);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toBe(`uncloud-vm: state file ${pool} is damaged (the cursor ff:ff:ff:ff:ff:ff of prefix 42:00:00 lies outside it); it was left untouched: repair or remove it\n`);
    }
    expect(readFileSync(pool, 'utf8')).toBe('{"version":1,"cursors":{"42:00:00":"ff:ff:ff:ff:ff:ff"}}');
  });

  it("a lease file naming another MAC than its file name is damaged: gc never reports freeing a running VM's MAC", async () => {
    expect((await start(['--name', 'good', '--detach'])).code).toBe(0);
    const [mac] = (await leases<{ mac: string }>()).map((l) => l.mac);
    const liar = join(fake.sb.stateDir, 'leases', '420000000009.json');
    writeFileSync(liar, JSON.stringify({ version: 1, mac, vm: { uuid: '00000000-0000-4000-8000-000000000009', name: 'liar' }, nic: 0, host: 'x', owners: [{ pid: 1, startTime: 1 }], created: new Date(0).toISOString() }));
    const gc = await run(['gc']);
    expect(gc.stdout + gc.stderr).not.toContain(mac);
    expect(existsSync(liar)).toBe(true);
    const list = await run(['mac', 'list', '--json']);
    expect(list.stderr).toMatch(/lease .*420000000009\.json is damaged \(its mac .* is not the one its name holds\)/);
    expect((JSON.parse(list.stdout) as { mac?: string; key?: string; state: string; vm?: { name: string } }[]).map((l) => [l.mac ?? l.key, l.state, l.vm?.name])).toEqual([
      [mac, 'live', 'good'],
      [liar, 'damaged', undefined],
    ]);
    // Released by its MAC, as every damaged record is: the running VM keeps its lease.
    expect((await run(['mac', 'release', '42:00:00:00:00:09', '--force'])).code).toBe(0);
    expect((await invariants()).violations).toEqual([]);
  });

  it('#7 stop never signals a process that is not this VM\'s qemu (a reused pid in the pidfile)', async () => {
    const other = spawn('sleep', ['60']);
    try {
      mkdirSync(join(fake.sb.runDir, 'ghost'), { recursive: true, mode: 0o700 });
      const uuid = '0b0b0b0b-0000-4000-8000-000000000001';
      writeFileSync(join(fake.sb.runDir, 'ghost', 'vm.json'), JSON.stringify({ version: 1, name: 'ghost', uuid, launcher: null, qemu: null, managedBy: 'launcher', taps: [], nics: [], started: new Date(0).toISOString(), qmpSocket: join(fake.sb.runDir, 'ghost', 'qmp.sock'), serialLog: '' }));
      writeFileSync(join(fake.sb.runDir, 'ghost', 'qemu.pid'), `${other.pid}\n`);
      const r = await run(['stop', 'ghost']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/VM ghost is not running/);
      expect(other.exitCode).toBeNull();
      expect(other.signalCode).toBeNull();
    } finally {
      other.kill('SIGKILL');
    }
  });

  it('#8 a UUID a running VM has is refused; UUIDs sharing their first ten digits get distinct taps', async () => {
    const uuid = '12345678-9abc-4def-8000-000000000001';
    expect((await start(['--name', 'u1', '--uuid', uuid, '--detach'])).code).toBe(0);
    const dup = await start(['--name', 'u2', '--uuid', uuid, '--detach']);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(new RegExp(`UUID ${uuid} is already used by VM u1 \\(running\\); pick another --uuid`));
    expect((await start(['--name', 'u3', '--uuid', '12345678-9abc-4def-8000-000000000002', '--detach'])).code).toBe(0);
    const taps = liveQemus(fake.sb.runDir).map((q) => q.taps[0]);
    expect(new Set(taps).size).toBe(2);
    // stop u1 releases u1's leases only
    await run(['stop', 'u1', '--timeout', '5']);
    expect((await leases()).map((l) => l.vm?.name)).toEqual(['u3']);
  });

  it("#9 a VM named like another VM's log file cannot touch it", async () => {
    expect((await start(['--name', 'x', '--detach'])).code).toBe(0);
    const log = JSON.parse((await run(['status', 'x', '--json'])).stdout).serialLog as string;
    writeFileSync(log, 'x was here\n');
    expect((await start(['--name', 'x.serial.log', '--detach'])).code).toBe(0);
    await run(['stop', 'x.serial.log', '--timeout', '5']);
    expect(readFileSync(log, 'utf8')).toBe('x was here\n');
  });

  it('#10 run dirs with no record, and staging dirs of a killed claim, are removed by gc', async () => {
    mkdirSync(join(fake.sb.runDir, 'norec'), { recursive: true, mode: 0o700 });
    writeFileSync(join(fake.sb.runDir, 'norec', 'qemu.pid'), '999999\n');
    mkdirSync(join(fake.sb.runDir, '.staging-abc'), { mode: 0o700 });
    const old = new Date(Date.now() - 3600_000);
    utimesSync(join(fake.sb.runDir, 'norec'), old, old);
    utimesSync(join(fake.sb.runDir, '.staging-abc'), old, old);
    const gc = await run(['gc']);
    expect(gc.stdout).toMatch(/removed run dir norec/);
    expect(readdirSync(fake.sb.runDir).filter((e) => e !== '.claim.lock' && e !== '.logs')).toEqual([]);
  });

  it('a staging dir of a claim killed a moment ago is removed by the next gc (claims make and rename it under the claim lock)', async () => {
    mkdirSync(join(fake.sb.runDir, '.staging-young'), { recursive: true, mode: 0o700 });
    writeFileSync(join(fake.sb.runDir, '.staging-young', '.tmp-vm.json-1-1'), '{');
    const gc = await run(['gc']);
    expect(gc.code, gc.stderr).toBe(0);
    expect(readdirSync(fake.sb.runDir).filter((e) => e !== '.claim.lock' && e !== '.logs')).toEqual([]);
  });

  it('#10 a start over a record-less run dir of the same name takes it over', async () => {
    mkdirSync(join(fake.sb.runDir, 'over'), { recursive: true, mode: 0o700 });
    writeFileSync(join(fake.sb.runDir, 'over', 'junk'), 'x');
    const old = new Date(Date.now() - 3600_000);
    utimesSync(join(fake.sb.runDir, 'over'), old, old);
    const r = await start(['--name', 'over', '--detach']);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(fake.sb.runDir, 'over', 'junk'))).toBe(false);
  });

  it('a copy or symlink of a running VM\'s run dir, and a stray file, make gc touch nothing of that VM', async () => {
    expect((await start(['--name', 'web2', '--detach'])).code).toBe(0);
    const mac = (await leases())[0]!.mac;
    cpSync(join(fake.sb.runDir, 'web2'), join(fake.sb.runDir, 'web2.bak'), { recursive: true, filter: (src) => !src.endsWith('.sock') });
    symlinkSync(join(fake.sb.runDir, 'web2'), join(fake.sb.runDir, 'web2.link'));
    writeFileSync(join(fake.sb.runDir, 'notes.txt'), 'junk');
    const old = new Date(Date.now() - 3600_000);
    utimesSync(join(fake.sb.runDir, 'web2.bak'), old, old);
    const gc = await run(['gc']);
    expect(gc.stdout).not.toMatch(/freed/);
    expect(gc.stdout).toMatch(/removed run dir web2\.bak \(a copy of VM web2's run dir; nothing of that VM was touched\)/);
    expect((await leases()).map((l) => [l.mac, l.state])).toEqual([[mac, 'live']]);
    expect((await invariants()).violations).toEqual([]);
    expect((await start(['--name', 'web3', '--detach'])).code).toBe(0);
  });

  it('a running VM whose record is damaged is still seen running and can be stopped', async () => {
    expect((await start(['--name', 'k11', '--detach'])).code).toBe(0);
    writeFileSync(join(fake.sb.runDir, 'k11', 'vm.json'), '{"version":1,');
    const st = await run(['status', 'k11']);
    expect(st.code).toBe(0);
    expect(st.stdout).toMatch(/running \(its record is damaged\)/);
    const stop = await run(['stop', 'k11', '--timeout', '5']);
    expect(stop.code, stop.stderr).toBe(0);
    await waitFor('qemu gone', () => liveQemus(fake.sb.runDir).length === 0);
    await run(['gc']);
    expect(await leases()).toEqual([]);
    expect((await invariants()).violations).toEqual([]);
  });

  it('#1 a VM whose own stale lease holds its remembered MAC gets that MAC back, and no one is blamed', async () => {
    let launcher = 0;
    void start(['--name', 'same'], {}, (c) => (launcher = c.pid!));
    await waitFor('qemu running', () => liveQemus(fake.sb.runDir).length === 1);
    const mac = (await leases())[0]!.mac;
    await killAndWait(launcher);
    process.kill(liveQemus(fake.sb.runDir)[0]!.pid, 'SIGKILL');
    await waitFor('qemu gone', () => liveQemus(fake.sb.runDir).length === 0);
    // No gc in between: the lease is stale, the run dir is left over.
    const again = await start(['--name', 'same', '--detach']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/held by/);
    expect((await leases()).map((l) => l.mac)).toEqual([mac]);
    expect((await invariants()).violations).toEqual([]);
  });

  it('#14 a control character in the host name or state dir is a one-line usage error', async () => {
    for (const env of [{ UNCLOUD_VM_HOST: 'h\nx' }, { UNCLOUD_VM_STATE_DIR: '/tmp/a\nb' }]) {
      for (const args of [['unit', 'v1'], ['agent', '--unit', '--store', 'etcd://127.0.0.1:2379'], ['mac', 'list']]) {
        const r = await run(args, env);
        expect(r.code, `${args} ${r.stderr}`).toBe(2);
        expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
        expect(r.stderr).toMatch(/must be non-empty and free of control characters/);
      }
    }
  });

  it('#12 units carry the host name and read credentials from the environment file; a relative run dir becomes absolute', async () => {
    const r = await run(['--run-dir', 'rel/run', 'unit', 'v1'], { UNCLOUD_VM_HOST: 'hx', UNCLOUD_VM_ETCD_PASSWORD: 'secret' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Environment=UNCLOUD_VM_HOST=hx$/m);
    expect(r.stdout).toMatch(/^EnvironmentFile=-\/etc\/uncloud-vm\/env$/m);
    expect(r.stdout).not.toMatch(/secret/);
    expect(r.stderr).toMatch(/UNCLOUD_VM_ETCD_PASSWORD are not written into the unit; put them in \/etc\/uncloud-vm\/env/);
    expect(r.stdout).toMatch(/--run-dir \/\S+\/rel\/run /);
    const a = await run(['agent', '--unit', '--store', 'etcd://127.0.0.1:2379'], { UNCLOUD_VM_HOST: 'hx' });
    expect(a.stdout).toMatch(/^Environment=UNCLOUD_VM_HOST=hx$/m);
  });

  it('#11 unit --nic …,filter=off: the unit\'s VM gets filter=off', async () => {
    const r = await run(['unit', 'f1', '--nic', 'bridge=br0,filter=off']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/hook prepare .*--nic bridge=br0,filter=off/);
  });
});
