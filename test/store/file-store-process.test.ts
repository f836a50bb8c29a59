/** The file store under real processes: concurrency, crashed owners, damaged files, unsafe dirs. */
import { spawn } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cli, ROOT, sandbox, type Sandbox } from '../helpers/cli.js';
import { snapshot } from '../helpers/state.js';

let sb: Sandbox;
beforeEach(() => {
  sb = sandbox();
});
afterEach(() => sb.cleanup());

describe('file store with real processes', () => {
  it('64 concurrent `mac allocate` give 64 distinct MACs and a valid state', async () => {
    const results = await Promise.all(Array.from({ length: 64 }, () => cli(['mac', 'allocate'], { env: sb.env })));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const macs = results.map((r) => r.stdout.trim());
    expect(new Set(macs).size).toBe(64);
    for (const m of macs) expect(m).toMatch(/^42:00:00:00:00:[0-9a-f]{2}$/);
    const list = await cli(['mac', 'list', '--json'], { env: sb.env });
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout).map((l: { mac: string }) => l.mac).sort()).toEqual([...macs].sort());
    const pool = JSON.parse(readFileSync(join(sb.stateDir, 'pool.json'), 'utf8'));
    expect(pool.cursors['42:00:00']).toBe('42:00:00:00:00:41');
  });

  it('a lease whose owner was SIGKILLed is stale, and gc frees it', async () => {
    const child = spawn(process.execPath, [join(ROOT, 'test/fixtures/hold-lease.mjs'), sb.stateDir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const mac = await new Promise<string>((res) => child.stdout.once('data', (d) => res(String(d).trim())));
    let list = JSON.parse((await cli(['mac', 'list', '--json'], { env: sb.env })).stdout);
    expect(list).toMatchObject([{ mac, state: 'live', owners: [{ pid: child.pid }] }]);
    expect((await cli(['gc'], { env: sb.env })).stdout).toBe('');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    list = JSON.parse((await cli(['mac', 'list', '--json'], { env: sb.env })).stdout);
    expect(list).toMatchObject([{ mac, state: 'stale' }]);
    const gc = await cli(['gc'], { env: sb.env });
    expect(gc.stdout).toContain(`freed ${mac} (VM holder nic0)`);
    expect(JSON.parse((await cli(['mac', 'list', '--json'], { env: sb.env })).stdout)).toEqual([]);
  });

  it('mac list streams pages: 2,500 leases come out whole and in order, as JSON and as one table', async () => {
    const { writeFileLeases } = await import('../../scripts/lib/lease-fixture.mjs');
    writeFileLeases(sb.stateDir, 2500, { base: 0x420000000000, prefix: '42:00:00', first: 0x100, host: 'h-other' });
    const json = await cli(['mac', 'list', '--json'], { env: sb.env });
    const rows = JSON.parse(json.stdout) as { mac: string; state: string }[];
    expect(rows).toHaveLength(2500);
    expect(rows.map((r) => r.mac)).toEqual(rows.map((r) => r.mac).sort());
    expect(json.stdout).toBe(`${JSON.stringify(JSON.parse(json.stdout), null, 2)}\n`);
    const text = (await cli(['mac', 'list'], { env: sb.env })).stdout.trimEnd().split('\n');
    expect(text).toHaveLength(2501);
    expect(text.filter((l) => l.startsWith('MAC '))).toHaveLength(1);
    expect(JSON.parse((await cli(['mac', 'pool', '--json'], { env: sb.env })).stdout).held).toBe(2500);
  });

  it('a manual lease is held until released, not freed by gc', async () => {
    const mac = (await cli(['mac', 'allocate', '--vm', 'db1'], { env: sb.env })).stdout.trim();
    await cli(['gc'], { env: sb.env });
    const list = JSON.parse((await cli(['mac', 'list', '--json'], { env: sb.env })).stdout);
    expect(list).toMatchObject([{ mac, state: 'held', vm: { name: 'db1' } }]);
    expect((await cli(['mac', 'release', mac], { env: sb.env })).code).toBe(0);
    const again = await cli(['mac', 'release', mac], { env: sb.env });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is not held/);
  });

  it.each([
    ['not JSON', '{"version":1,"cursors":', /state file .*pool\.json is damaged \(not valid JSON\)/],
    ['a foreign version', '{"version":7,"cursors":{}}', /pool\.json has version 7; this uncloud-vm reads version 1/],
    ['a bad cursor', '{"version":1,"cursors":{"42:00:00":"zz"}}', /pool\.json is damaged \(bad cursor/],
  ])('a pool file with %s is a clear error and stays as it was', async (_l, text, re) => {
    await cli(['mac', 'allocate'], { env: sb.env });
    writeFileSync(join(sb.stateDir, 'pool.json'), text);
    const before = snapshot(sb.stateDir);
    const r = await cli(['mac', 'allocate'], { env: sb.env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(re);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(snapshot(sb.stateDir)).toEqual(before);
  });

  it('a damaged lease file is named by list and gc (gc exits 1: an operator must look)', async () => {
    const mac = (await cli(['mac', 'allocate'], { env: sb.env })).stdout.trim();
    const file = join(sb.stateDir, 'leases', `${mac.replaceAll(':', '')}.json`);
    writeFileSync(file, '{"version":1,"mac":');
    for (const [args, code] of [[['mac', 'list'], 0], [['gc'], 1], [['list'], 0]] as const) {
      const r = await cli([...args], { env: sb.env });
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr).toContain(`lease ${file} is damaged`);
    }
  });

  it('refuses a state dir that others can write to', async () => {
    await cli(['mac', 'allocate'], { env: sb.env });
    chmodSync(sb.stateDir, 0o777);
    const r = await cli(['mac', 'allocate'], { env: sb.env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/writable by group or others \(mode 777\)/);
  });

  it('refuses a state dir owned by someone else, and a group-writable run dir', async () => {
    await cli(['mac', 'allocate'], { env: sb.env });
    const { chownSync, mkdirSync } = await import('node:fs');
    chownSync(sb.stateDir, 65534, 65534);
    const r = await cli(['mac', 'allocate'], { env: sb.env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/state.* is owned by uid 65534, not by this user \(uid 0\); refusing to use it/);
    chownSync(sb.stateDir, 0, 0);
    mkdirSync(sb.runDir, { mode: 0o700 });
    chmodSync(sb.runDir, 0o775);
    const { createNetns } = await import('../helpers/netns.js');
    const ns = createNetns(['br0']);
    let s;
    try {
      s = await cli(['start', '--accel', 'tcg', '--memory', '64', '--qemu', '/bin/true'], { env: sb.env, netns: ns.name });
    } finally {
      ns.remove();
    }
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/run is writable by group or others \(mode 775\)/);
  });

  it('creates the state dir 0700 and its files 0600', async () => {
    await cli(['mac', 'allocate'], { env: sb.env });
    const snap = snapshot(sb.stateDir);
    for (const [k, v] of Object.entries(snap)) {
      expect(v.split(' ')[0], k).toBe(k.endsWith('/') ? '700' : '600');
    }
  });
});
