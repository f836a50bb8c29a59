/**
 * `mac list` over a pool large enough that the file store reads it through its read-ahead worker
 * (file-lease-pages.ts): every lease's state, the damaged records, and the JSON byte for byte what
 * JSON.stringify(rows, null, 2) of the records gives.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkLocalAddress } from '../../src/core/eui64.js';
import { formatIpv6 } from '../../src/core/ip.js';
import { parsePool } from '../../src/core/mac.js';
import type { Owner } from '../../src/core/owner.js';
import { READ_AHEAD_FROM } from '../../src/store/file-lease-pages.js';
import { currentOwner } from '../../src/system/proc.js';
import { writeFileLeases } from '../../scripts/lib/lease-fixture.mjs';
import { cli, type Sandbox, sandbox } from '../helpers/cli.js';

const N = READ_AHEAD_FROM + 2_500;
const HOST = 'list-host';
const pool = parsePool('42:00:00');
const me = currentOwner(process.pid)!;
/** Lease i's owners: none (held), this test (live), this pid with another start time (stale: the pid was reused), a pid that never runs (stale). */
const ownersOf = (i: number): Owner[] => [[], [me], [{ pid: me.pid, startTime: me.startTime + 1 }], [{ pid: 4_000_001, startTime: 1 }]][i % 4]!;
const stateOf = (i: number) => ['held', 'live', 'stale', 'stale'][i % 4]!;
const hexAt = (i: number) => (pool.base + 1 + i).toString(16).padStart(12, '0');

let box: Sandbox;
const damagedAt = [17, 5_003];
beforeAll(() => {
  box = sandbox({ UNCLOUD_VM_HOST: HOST });
  const fixture = { base: pool.base, prefix: pool.prefix, first: 1, host: HOST, owners: ownersOf };
  writeFileLeases(box.stateDir, N, fixture);
  // Another host's leases (remote) between this host's: written over the fixture's, with owners that would read as stale here.
  for (let i = 1; i < N; i += 1_000) {
    const path = join(box.stateDir, 'leases', `${hexAt(i)}.json`);
    writeFileSync(path, `${JSON.stringify({ version: 1, mac: macOf(i), vm: { name: `r${i}` }, nic: 1, host: 'other', owners: [{ pid: 4_000_001, startTime: 1 }], created: new Date(0).toISOString() })}\n`);
  }
  // Damaged: not JSON, a record naming another MAC than its file, a directory where a lease file would be.
  writeFileSync(join(box.stateDir, 'leases', `${hexAt(damagedAt[0]!)}.json`), 'not json\n');
  writeFileSync(join(box.stateDir, 'leases', `${hexAt(damagedAt[1]!)}.json`), `${JSON.stringify({ version: 1, mac: macOf(0), vm: null, nic: null, host: HOST, owners: [], created: 'x' })}\n`);
  mkdirSync(join(box.stateDir, 'leases', `${hexAt(N + 5)}.json`));
}, 120_000);
afterAll(() => box?.cleanup());

function macOf(i: number): string {
  return hexAt(i).match(/../g)!.join(':');
}

describe(`mac list at ${N.toLocaleString('en-US')} leases (read ahead by a worker)`, () => {
  it('--json: each lease with its state and link-local address, then the damaged ones, as JSON.stringify prints them', async () => {
    const r = await cli(['mac', 'list', '--json'], { env: box.env });
    expect(r.code).toBe(0);
    const leaseDir = join(box.stateDir, 'leases');
    const rows: object[] = [];
    for (let i = 0; i < N; i++) {
      if (damagedAt.includes(i)) continue;
      const mac = macOf(i);
      const remote = i % 1_000 === 1;
      const owners = remote ? [{ pid: 4_000_001, startTime: 1 }] : ownersOf(i);
      const vm = remote ? { name: `r${i}` } : owners.length > 0 ? { uuid: `00000000-0000-4000-8000-${hexAt(i)}`, name: `fx-${hexAt(i)}` } : null;
      const nic = remote ? 1 : owners.length > 0 ? 0 : null;
      const lease = { version: 1, mac, vm, nic, host: remote ? 'other' : HOST, owners, created: new Date(0).toISOString() };
      rows.push({ ...lease, state: remote ? 'remote' : stateOf(i), addresses: { linkLocal: formatIpv6(linkLocalAddress(pool.base + 1 + i)) } });
    }
    const why = [
      `lease ${leaseDir}/${hexAt(damagedAt[0]!)}.json is damaged (not valid JSON); it was left untouched: repair or remove it`,
      `lease ${leaseDir}/${hexAt(damagedAt[1]!)}.json is damaged (its mac ${macOf(0)} is not the one its name holds); it was left untouched: repair or remove it`,
      `lease ${leaseDir}/${hexAt(N + 5)}.json is damaged (cannot be read: EISDIR: illegal operation on a directory, read); it was left untouched: repair or remove it`,
    ];
    const keys = [damagedAt[0]!, damagedAt[1]!, N + 5].map((i) => `${leaseDir}/${hexAt(i)}.json`);
    rows.push(...keys.map((key, i) => ({ key, state: 'damaged', why: why[i] })));
    expect(r.stdout).toBe(`${JSON.stringify(rows, null, 2)}\n`);
    expect(r.stderr).toBe(why.map((w) => `uncloud-vm: damaged record: ${w}\n`).join(''));
  });

  it('the table: one row per lease and per damaged record, states as in --json', async () => {
    const r = await cli(['mac', 'list'], { env: box.env });
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^MAC +STATE +VM +NIC +HOST +PIDS +CREATED$/);
    expect(lines).toHaveLength(1 + (N - 2) + 3);
    const states = new Map(lines.slice(1).map((l) => l.split(/ +/) as [string, string]));
    expect(states.get(macOf(4))).toBe('held');
    expect(states.get(macOf(5))).toBe('live');
    expect(states.get(macOf(6))).toBe('stale');
    expect(states.get(macOf(7))).toBe('stale');
    expect(states.get(macOf(1_001))).toBe('remote');
    expect(states.get(hexAt(damagedAt[0]!))).toBe('damaged');
    expect(states.get(hexAt(N + 5))).toBe('damaged');
  });
});
