#!/usr/bin/env node
// npm run bench: what operators feel, each figure a median (with min and max) over several runs, measured
// side by side with its reference in this one run. Writes bench/results/latest.{json,md}.
// Needs root (a network namespace with a bridge for the launcher figures). Not a test: it asserts only
// correctness (no duplicate MAC), never a time.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEtcd } from './lib/etcd.mjs';
import { writeEtcdLeases, writeFileLeases } from './lib/lease-fixture.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
import { BIN } from './lib/cluster.mjs';
const FAKE_QEMU = join(ROOT, 'test/fixtures/fake-qemu');
const QUICK = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',');
const RUNS = Number(process.argv.find((a) => a.startsWith('--runs='))?.slice(7)) || undefined;
const rows = [];
const temps = [];

function tmp(label) {
  const d = mkdtempSync(join(tmpdir(), `uncloud-vm-bench-${label}-`));
  temps.push(d);
  return d;
}

/** A node -e module script: `each` allocations through the etcd store at argv[1], their MACs one per line on stdout. */
function storeAllocScript(each) {
  return `
    const { EtcdStore } = await import(${JSON.stringify(join(ROOT, 'dist/store/etcd-store.js'))});
    const { parsePool } = await import(${JSON.stringify(join(ROOT, 'dist/core/mac.js'))});
    const { parseStore } = await import(${JSON.stringify(join(ROOT, 'dist/core/store-url.js'))});
    const s = new EtcdStore({ target: parseStore(process.argv[1]) });
    const pool = parsePool('42:00:00');
    const out = [];
    for (let i = 0; i < ${each}; i++) out.push((await s.allocate(pool, [{ vm: null, nic: null, owners: [] }]))[0].mac);
    process.stdout.write(out.join('\\n') + '\\n');
    await s.close();`;
}

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], runs: s.length };
}

function record(section, name, unit, samples, extra = {}) {
  const row = { section, name, unit, ...stats(samples), ...extra };
  rows.push(row);
  const fmt = (v) => (unit === 'ms' || unit === 'MiB' ? v.toFixed(1) : unit === 'M' ? v.toFixed(2) : String(Math.round(v)));
  console.log(`${section.padEnd(22)} ${name.padEnd(52)} ${fmt(row.median).padStart(9)} ${unit.padEnd(4)} (min ${fmt(row.min)}, max ${fmt(row.max)}, n=${row.runs})${extra.note ? `  ${extra.note}` : ''}`);
  return row;
}

function timeSync(cmd, args, env) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return ms;
}

function envFor(dir, extra = {}) {
  return {
    PATH: process.env.PATH,
    HOME: dir,
    UNCLOUD_VM_STATE_DIR: join(dir, 'state'),
    UNCLOUD_VM_RUN_DIR: join(dir, 'run'),
    UNCLOUD_VM_CONFIG: join(ROOT, 'test/fixtures/empty-config.json'),
    ...extra,
  };
}

const want = (name) => !only || only.includes(name);

// 1. CLI latency, interleaved with `node -e 0` so both see the same machine state.
function cliLatency() {
  const dir = tmp('cli');
  const env = envFor(dir);
  spawnSync(process.execPath, [BIN, 'mac', 'allocate'], { env });
  const n = QUICK ? 7 : 21;
  const base = [];
  const dry = [];
  const pool = [];
  for (let i = 0; i < n; i++) {
    base.push(timeSync(process.execPath, ['-e', '0'], env));
    dry.push(timeSync(process.execPath, [BIN, 'start', '--dry-run', '--memory', '1024', '--cores', '2'], env));
    pool.push(timeSync(process.execPath, [BIN, 'mac', 'pool'], env));
  }
  const b = record('cli latency', 'node -e 0 (the floor)', 'ms', base);
  const d = record('cli latency', 'start --dry-run --memory 1024 --cores 2', 'ms', dry);
  const p = record('cli latency', 'mac pool', 'ms', pool);
  const ratio = (x) => x.median / b.median;
  d.ratio = ratio(d);
  p.ratio = ratio(p);
  console.log(`${''.padEnd(22)} ratio to node -e 0: dry-run ${d.ratio.toFixed(2)}x, mac pool ${p.ratio.toFixed(2)}x (target <= 1.3x)`);

  // The same three as instructions (valgrind's callgrind, when installed): the machine's load does not move them,
  // so the ratios hold on a shared machine. V8 searches a random prime for its hash secret at every start
  // (detail::sprp, 8 +- 3 M instructions): left out of each count.
  if (spawnSync('valgrind', ['--version']).status === 0) {
    const instructions = (args) => {
      const out = join(dir, 'callgrind.out');
      const r = spawnSync('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, process.execPath, ...args], { env, encoding: 'utf8' });
      const total = Number(/Collected : (\d+)/.exec(r.stderr)?.[1]);
      if (r.status !== 0 || !total) throw new Error(`callgrind ${args.join(' ')}: ${r.stderr}`);
      const annotated = spawnSync('callgrind_annotate', ['--threshold=100', out], { encoding: 'utf8', maxBuffer: 64 << 20 }).stdout;
      const prime = /^\s*([\d,]+) .*detail::sprp/m.exec(annotated ?? '');
      return (total - Number(prime?.[1].replaceAll(',', '') ?? 0)) / 1e6;
    };
    const runs = QUICK ? 1 : 3;
    const ib = [];
    const id = [];
    const ip = [];
    for (let i = 0; i < runs; i++) {
      ib.push(instructions(['-e', '0']));
      id.push(instructions([BIN, 'start', '--dry-run', '--memory', '1024', '--cores', '2']));
      ip.push(instructions([BIN, 'mac', 'pool']));
    }
    const bi = record('cli instructions', 'node -e 0 (the floor)', 'M', ib);
    const di = record('cli instructions', 'start --dry-run --memory 1024 --cores 2', 'M', id);
    const pi = record('cli instructions', 'mac pool', 'M', ip);
    di.ratio = di.median / bi.median;
    pi.ratio = pi.median / bi.median;
    console.log(`${''.padEnd(22)} instructions to node -e 0: dry-run ${di.ratio.toFixed(3)}x, mac pool ${pi.ratio.toFixed(3)}x`);
  }

  // What each package the user chose costs a process, as the command loads it (its chunk of the build, beside
  // the entry chunk alone) and from node_modules (beside node -e 0). commander is in the entry chunk.
  const LOAD_CHUNK = join(ROOT, 'scripts/lib/load-chunk.cjs');
  const fromModules = (pkg) => `import(require('node:module').createRequire(${JSON.stringify(join(ROOT, 'package.json'))}).resolve('${pkg}')).then((m) => Object.keys(m).forEach((k) => m[k]))`;
  const pkgs = [
    ['execa', 'execa'],
    ['proper-lockfile', 'proper-lockfile'],
    ['uuid', 'dist-node'],
  ];
  const entry = [];
  const chunk = Object.fromEntries(pkgs.map(([p]) => [p, []]));
  const plain = Object.fromEntries([...pkgs.map(([p]) => p), 'commander', 'etcd3'].map((p) => [p, []]));
  const floor = [];
  for (let i = 0; i < n; i++) {
    floor.push(timeSync(process.execPath, ['-e', '0'], env));
    entry.push(timeSync(process.execPath, [LOAD_CHUNK, '-'], env));
    for (const [p, c] of pkgs) chunk[p].push(timeSync(process.execPath, [LOAD_CHUNK, c], env));
    for (const p of Object.keys(plain)) plain[p].push(timeSync(process.execPath, ['-e', fromModules(p)], env));
  }
  const f = stats(floor).median;
  const e = record('package cost', 'entry chunk with commander (uncloud-vm --version)', 'ms', entry, { note: `+${(stats(entry).median - f).toFixed(1)} ms over node -e 0` });
  for (const [p] of pkgs) record('package cost', `${p}: its chunks, beside the entry alone`, 'ms', chunk[p], { note: `+${(stats(chunk[p]).median - e.median).toFixed(1)} ms` });
  for (const p of Object.keys(plain)) record('package cost', `${p} from node_modules, beside node -e 0`, 'ms', plain[p], { note: `+${(stats(plain[p]).median - f).toFixed(1)} ms` });
}

// 2. Allocation throughput on the file store: one process, and 64 processes at once.
async function allocation() {
  const { FileStore } = await import(join(ROOT, 'dist/store/file-store.js'));
  const { parsePool } = await import(join(ROOT, 'dist/core/mac.js'));
  const pool = parsePool('42:00:00');
  const total = QUICK ? 2000 : 10000;
  const per = [];
  for (let rep = 0; rep < 3; rep++) {
    const store = new FileStore({ dir: join(tmp('alloc1'), 'state') });
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < total; i++) await store.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
    per.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const held = (await store.status(pool)).held;
    if (held !== total) throw new Error(`expected ${total} held, got ${held}`);
  }
  record('allocation (file)', `one process, ${total} allocations: total`, 'ms', per, { note: `${(per.sort((a, b) => a - b)[1] / total).toFixed(3)} ms each` });

  const procs = 64;
  const each = QUICK ? 20 : 100;
  const script = `
    const { FileStore } = await import(${JSON.stringify(join(ROOT, 'dist/store/file-store.js'))});
    const { parsePool } = await import(${JSON.stringify(join(ROOT, 'dist/core/mac.js'))});
    const store = new FileStore({ dir: process.argv[1] });
    const pool = parsePool('42:00:00');
    const out = [];
    for (let i = 0; i < ${each}; i++) out.push((await store.allocate(pool, [{ vm: null, nic: null, owners: [] }]))[0].mac);
    process.stdout.write(out.join('\\n'));`;
  const times = [];
  for (let rep = 0; rep < 3; rep++) {
    const dir = join(tmp('alloc64'), 'state');
    const t0 = process.hrtime.bigint();
    const outs = await Promise.all(
      Array.from({ length: procs }, () =>
        new Promise((res, rej) => {
          const c = spawn(process.execPath, ['--input-type=module', '-e', script, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
          let o = '';
          c.stdout.on('data', (d) => (o += d));
          c.on('close', (code) => (code === 0 ? res(o) : rej(new Error(`allocator exited ${code}`))));
        }),
      ),
    );
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    const macs = outs.flatMap((o) => o.split('\n'));
    const dups = macs.length - new Set(macs).size;
    if (macs.length !== procs * each || dups !== 0) throw new Error(`64-way: ${macs.length} MACs, ${dups} duplicates`);
  }
  record('allocation (file)', `${procs} processes x ${each} at once: total`, 'ms', times, { note: '0 duplicates' });

  const cliTimes = [];
  for (let rep = 0; rep < 3; rep++) {
    const env = envFor(tmp('cli64'));
    const t0 = process.hrtime.bigint();
    const outs = await Promise.all(
      Array.from({ length: 64 }, () =>
        new Promise((res, rej) => {
          const c = spawn(process.execPath, [BIN, 'mac', 'allocate'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
          let o = '';
          c.stdout.on('data', (d) => (o += d));
          c.on('close', (code) => (code === 0 ? res(o.trim()) : rej(new Error(`mac allocate exited ${code}`))));
        }),
      ),
    );
    cliTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (new Set(outs).size !== 64) throw new Error('64 concurrent mac allocate: duplicates');
  }
  record('allocation (file)', '64 concurrent `uncloud-vm mac allocate`: total', 'ms', cliTimes, { note: '64 distinct' });
}

// 2b. The same on etcd, and one allocation's latency on both stores side by side.
async function allocationEtcd() {
  const { FileStore } = await import(join(ROOT, 'dist/store/file-store.js'));
  const { EtcdStore } = await import(join(ROOT, 'dist/store/etcd-store.js'));
  const { parsePool } = await import(join(ROOT, 'dist/core/mac.js'));
  const { parseStore } = await import(join(ROOT, 'dist/core/store-url.js'));
  const pool = parsePool('42:00:00');
  const etcd = await startEtcd();
  try {
    const n = QUICK ? 200 : 1000;
    const file = new FileStore({ dir: join(tmp('lat-file'), 'state') });
    const e = new EtcdStore({ target: parseStore(etcd.url('lat')) });
    const lf = [];
    const le = [];
    for (let i = 0; i < n; i++) {
      let t0 = process.hrtime.bigint();
      await file.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
      lf.push(Number(process.hrtime.bigint() - t0) / 1e6);
      t0 = process.hrtime.bigint();
      await e.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
      le.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const f = record('allocation latency', 'one allocation, file store', 'ms', lf);
    const et = record('allocation latency', 'one allocation, etcd store (loopback)', 'ms', le);
    et.ratio = et.median / f.median;
    console.log(`${''.padEnd(22)} etcd / file: ${et.ratio.toFixed(2)}x`);
    await e.close();

    const total = QUICK ? 2000 : 10000;
    const per = [];
    for (let rep = 0; rep < (QUICK ? 1 : 3); rep++) {
      const s = new EtcdStore({ target: parseStore(etcd.url(`one${rep}`)) });
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < total; i++) await s.allocate(pool, [{ vm: null, nic: null, owners: [] }]);
      per.push(Number(process.hrtime.bigint() - t0) / 1e6);
      await s.close();
    }
    record('allocation (etcd)', `one process, ${total} allocations: total`, 'ms', per, { note: `${(stats(per).median / total).toFixed(3)} ms each` });

    const procs = 64;
    const each = QUICK ? 20 : 100; // each process also pays the etcd client's start (the floor row below)
    const times = [];
    for (let rep = 0; rep < (QUICK ? 1 : 3); rep++) {
      const url = etcd.url(`par${rep}`);
      const script = storeAllocScript(each);
      const t0 = process.hrtime.bigint();
      const outs = await Promise.all(Array.from({ length: procs }, () => new Promise((res, rej) => {
        const c = spawn(process.execPath, ['--input-type=module', '-e', script, url], { stdio: ['ignore', 'pipe', 'inherit'] });
        let o = '';
        c.stdout.on('data', (d) => (o += d));
        c.on('close', (code) => (code === 0 ? res(o) : rej(new Error(`etcd allocator exited ${code}`))));
      })));
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
      const macs = outs.join('').trim().split('\n');
      const dups = macs.length - new Set(macs).size;
      if (macs.length !== procs * each || dups !== 0) throw new Error(`etcd 64-way: ${macs.length} MACs, ${dups} duplicates`);
    }
    record('allocation (etcd)', `${procs} processes x ${each} at once: total`, 'ms', times, { note: '0 duplicates' });
    // The floor of that figure: 64 processes that only load the etcd client, connect once and exit.
    const floor = [];
    for (let rep = 0; rep < (QUICK ? 1 : 3); rep++) {
      const script = `
        const { EtcdStore } = await import(${JSON.stringify(join(ROOT, 'dist/store/etcd-store.js'))});
        const { parseStore } = await import(${JSON.stringify(join(ROOT, 'dist/core/store-url.js'))});
        const s = new EtcdStore({ target: parseStore(process.argv[1]) });
        await s.list();
        await s.close();`;
      const t0 = process.hrtime.bigint();
      await Promise.all(Array.from({ length: procs }, () => new Promise((res, rej) => {
        const c = spawn(process.execPath, ['--input-type=module', '-e', script, etcd.url('floor')], { stdio: 'ignore' });
        c.on('close', (code) => (code === 0 ? res() : rej(new Error(`etcd client exited ${code}`))));
      })));
      floor.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    record('allocation (etcd)', `${procs} processes that only start the etcd client (the floor)`, 'ms', floor);
  } finally {
    await etcd.remove();
  }
}

// 3. Scaling: every verb with 0, 10k, 100k and 200k leases held, on both stores, through the CLI as users run
// it; each beside the same verb at 0 held. The leases are written straight into the store
// (scripts/lib/lease-fixture.mjs), all sizes first; then, once the machine is quiet again (etcd done with the
// writes, the page cache flushed), rounds run every verb at every size side by side, the sizes in a rotating
// order, so that a slow moment of the machine lands on all sizes alike rather than on one.
async function scaling() {
  const { parsePool } = await import(join(ROOT, 'dist/core/mac.js'));
  const pool = parsePool('42:00:00');
  const given = process.argv.find((a) => a.startsWith('--sizes='))?.slice(8).split(',').map(Number);
  const sizes = given ?? (QUICK ? [0, 10000] : [0, 10000, 100000, 200000]);
  const runs = RUNS ?? (QUICK ? 3 : 11);
  const verbs = [
    ['mac allocate', ['mac', 'allocate']],
    ['start --dry-run', ['start', '--dry-run', '--memory', '1024', '--cores', '2']],
    ['mac pool', ['mac', 'pool']],
    ['mac list --json', ['mac', 'list', '--json']],
    ['list --json', ['list', '--json']],
    ['gc', ['gc']],
  ];
  const etcd = await startEtcd();
  try {
    for (const store of ['file', 'etcd']) {
      const envs = [];
      for (const held of sizes) {
        const dir = tmp(`scale-${store}${held}`);
        const fixture = { base: pool.base, prefix: pool.prefix, first: 0x100000, stride: 7, host: 'bench-other-host' };
        const extra = {};
        if (store === 'file') writeFileLeases(join(dir, 'state'), held, fixture);
        else {
          await writeEtcdLeases(etcd.endpoint, `/scale${held}`, held, fixture);
          extra.UNCLOUD_VM_STORE = etcd.url(`scale${held}`);
        }
        envs.push({ held, env: envFor(dir, extra) });
      }
      await settle(store === 'etcd' ? etcd.pid() : undefined);
      const samples = new Map(verbs.map(([name]) => [name, sizes.map(() => [])]));
      for (let round = 0; round < runs; round++) {
        for (const [name, args] of verbs) {
          for (let k = 0; k < envs.length; k++) {
            const at = (k + round) % envs.length;
            samples.get(name)[at].push(timeSync(process.execPath, [BIN, ...args], envs[at].env));
          }
        }
      }
      for (let at = 0; at < envs.length; at++) {
        for (const [name] of verbs) {
          const mine = samples.get(name)[at];
          const row = record(`scaling (${store})`, `${name}, ${envs[at].held.toLocaleString('en-US')} held`, 'ms', mine);
          if (at === 0) continue;
          const zero = samples.get(name)[0];
          row.ratio = row.median / stats(zero).median;
          // The same ratio taken round by round (each beside the 0-held run of its own round).
          row.note = `per round: ${stats(mine.map((v, r) => v / zero[r])).median.toFixed(2)}x`;
        }
      }
      if (store === 'file') macListOwned(pool, runs, stats(samples.get('mac list --json')[0]));
      await allocationDuringGc(store, etcd, pool, runs);
    }
  } finally {
    await etcd.remove();
  }
}

/** CPU time (ms) a process has used so far, from /proc/<pid>/stat (utime + stime). */
function cpuMs(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // clock ticks at 100 Hz
}

/**
 * Waits until the machine is quiet after a fixture: dirty pages written out, and etcd (when given) using under
 * 2% of a core for 2 s in a row (it snapshots and commits in the background after a large write). At most 120 s.
 */
async function settle(etcdPid) {
  spawnSync('sync');
  if (!etcdPid) return;
  const deadline = Date.now() + 120_000;
  let quiet = 0;
  while (quiet < 4 && Date.now() < deadline) {
    const before = cpuMs(etcdPid);
    await new Promise((r) => setTimeout(r, 500));
    quiet = cpuMs(etcdPid) - before < 10 ? quiet + 1 : 0;
  }
  if (quiet < 4) console.log('scaling: etcd still busy after 120 s; measuring anyway');
}

// 3. (file store) `mac list` over this host's leases, whose states need their owners' liveness from /proc: two NICs per VM,
// every VM's owner gone but one in 500 (this bench, alive), as JSON and as the table, beside `mac list --json` at 0
// held (the scaling rounds' figure; with --only=mac-list, measured here in the same rounds).
function macListOwned(pool, runs, zero) {
  const held = QUICK ? 10000 : 100000;
  const dir = tmp('scale-file-owned');
  const me = { pid: process.pid, startTime: Number(readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19]) };
  // pids past this machine's pid_max (32768 unless raised) never run; start time 1 is no process's either way.
  const owners = (i) => [i % 1000 < 2 ? me : { pid: 100000 + (i >> 1), startTime: 1 }];
  writeFileLeases(join(dir, 'state'), held, { base: pool.base, prefix: pool.prefix, first: 0x100000, stride: 7, host: 'bench-own-host', owners });
  spawnSync('sync');
  const env = envFor(dir, { UNCLOUD_VM_HOST: 'bench-own-host' });
  const empty = zero ? null : envFor(tmp('scale-file-empty'));
  const zeros = [];
  const json = [];
  const table = [];
  for (let i = 0; i < runs; i++) {
    if (empty) zeros.push(timeSync(process.execPath, [BIN, 'mac', 'list', '--json'], empty));
    json.push(timeSync(process.execPath, [BIN, 'mac', 'list', '--json'], env));
    table.push(timeSync(process.execPath, [BIN, 'mac', 'list'], env));
  }
  const base = zero ?? record('scaling (file)', 'mac list --json, 0 held', 'ms', zeros);
  const label = `${held.toLocaleString('en-US')} of this host's (${(held / 2).toLocaleString('en-US')} VMs)`;
  for (const [name, samples] of [
    [`mac list --json, ${label}`, json],
    [`mac list, ${label}`, table],
  ]) {
    const row = record('scaling (file)', name, 'ms', samples);
    row.ratio = row.median / base.median;
    row.note = 'owners: 1 in 500 alive; target <= 1 s at 100,000';
  }
}

/** Whether a process has ended (a zombie not yet reaped counts as ended). */
function ended(pid) {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] === 'Z';
  } catch {
    return true;
  }
}

// 3a. gc never holds the pool lock while it reads: `mac allocate` while gc reads this host's 100,000 leases,
// beside `mac allocate` alone, interleaved. Counted only when gc was still running when the allocation ended.
async function allocationDuringGc(store, etcd, pool, runs) {
  const held = QUICK ? 10000 : 100000;
  const dir = tmp(`scale-${store}-gc`);
  const fixture = { base: pool.base, prefix: pool.prefix, first: 0x100000, stride: 7, host: 'bench-gc-host' };
  const extra = { UNCLOUD_VM_HOST: 'bench-gc-host' };
  if (store === 'file') writeFileLeases(join(dir, 'state'), held, fixture);
  else {
    await writeEtcdLeases(etcd.endpoint, '/scale-gc', held, fixture);
    extra.UNCLOUD_VM_STORE = etcd.url('scale-gc');
  }
  const env = envFor(dir, extra);
  const alone = [];
  const during = [];
  for (let i = 0; i < runs * 2 && during.length < runs; i++) {
    alone.push(timeSync(process.execPath, [BIN, 'mac', 'allocate'], env));
    const gc = spawn(process.execPath, [BIN, 'gc'], { env, stdio: 'ignore' });
    const exit = new Promise((r) => gc.once('exit', r));
    await new Promise((r) => setTimeout(r, 400)); // gc has started and is reading
    const ms = timeSync(process.execPath, [BIN, 'mac', 'allocate'], env);
    if (!ended(gc.pid)) during.push(ms);
    await exit;
  }
  const label = `${held.toLocaleString('en-US')} of this host's leases`;
  const base = record(`scaling (${store})`, `mac allocate, gc not running, ${label}`, 'ms', alone);
  if (during.length === 0) {
    console.log(`scaling (${store}): gc ended before the allocation did; no figure`);
    return;
  }
  const row = record(`scaling (${store})`, `mac allocate while gc reads ${label}`, 'ms', during);
  row.ratio = row.median / base.median;
  row.note = 'target <= 2x';
}

// 3b. etcd allocation throughput in one process at 1, 8 and 64 concurrent allocators, beside plain
// create-if-absent transactions (one key each, the same count) on the same etcd.
/** The built etcd store and what it needs, for the in-process figures. */
async function etcdParts() {
  const { EtcdStore } = await import(join(ROOT, 'dist/store/etcd-store.js'));
  const { parsePool } = await import(join(ROOT, 'dist/core/mac.js'));
  const { parseStore } = await import(join(ROOT, 'dist/core/store-url.js'));
  return { EtcdStore, parseStore, pool: parsePool('42:00:00') };
}

async function etcdThroughput() {
  const { EtcdStore, parseStore, pool } = await etcdParts();
  const { Etcd3 } = await import('etcd3');
  const total = QUICK ? 500 : 2000;
  const reps = QUICK ? 1 : 5;
  const etcd = await startEtcd();
  let run = 0;
  try {
    // In one process: raw and store runs alternate, each on a fresh prefix, so both see the same machine.
    for (const workers of [1, 8, 64]) {
      const rawRates = [];
      const storeRates = [];
      for (let rep = 0; rep < reps; rep++) {
        run += 1;
        const raw = new Etcd3({ hosts: etcd.endpoint });
        let next = 0;
        let t0 = process.hrtime.bigint();
        await Promise.all(Array.from({ length: workers }, async () => {
          for (let i = next++; i < total; i = next++) {
            const key = `/raw${run}/macs/${i.toString(16).padStart(12, '0')}`;
            await raw.if(key, 'Create', '==', 0).then(raw.put(key).value('{}')).commit();
          }
        }));
        rawRates.push((total / Number(process.hrtime.bigint() - t0)) * 1e9);
        raw.close();
        const store = new EtcdStore({ target: parseStore(etcd.url(`tp${run}`)) });
        let done = 0;
        const macs = [];
        t0 = process.hrtime.bigint();
        await Promise.all(Array.from({ length: workers }, async () => {
          while (done++ < total) macs.push((await store.allocate(pool, [{ vm: null, nic: null, owners: [] }]))[0].mac);
        }));
        storeRates.push((total / Number(process.hrtime.bigint() - t0)) * 1e9);
        await store.close();
        if (new Set(macs).size !== total) throw new Error(`etcd throughput at ${workers}: duplicates`);
      }
      const r = record('etcd throughput', `${workers} allocator(s) in one process: plain create-if-absent`, '/s', rawRates);
      const a = record('etcd throughput', `${workers} allocator(s) in one process: store allocations`, '/s', storeRates, { note: `${total} distinct per run` });
      a.ratio = a.median / r.median;
      console.log(`${''.padEnd(22)} store / raw at ${workers}: ${a.ratio.toFixed(2)}x (target >= 0.7x)`);
    }

    // 64 processes at once, each allocating `each` in a row through the store, beside 64 processes each doing as
    // many plain create-if-absent transactions. Both load etcd3 and connect once per process.
    const procs = 64;
    const each = QUICK ? 20 : 100;
    const spawnAll = (script, args) => Promise.all(Array.from({ length: procs }, (_, p) => new Promise((res, rej) => {
      const c = spawn(process.execPath, ['--input-type=module', '-e', script, ...args(p)], { cwd: ROOT, env: envFor(tmp('tpp')), stdio: ['ignore', 'pipe', 'inherit'] });
      let o = '';
      c.stdout.on('data', (d) => (o += d));
      c.on('close', (code) => (code === 0 ? res(o) : rej(new Error(`a bench process exited ${code}`))));
    })));
    const rawScript = `
      const { Etcd3 } = await import('etcd3');
      const c = new Etcd3({ hosts: process.argv[1] });
      for (let i = 0; i < ${each}; i++) {
        const key = process.argv[2] + '/macs/' + (Number(process.argv[3]) * ${each} + i).toString(16).padStart(12, '0');
        await c.if(key, 'Create', '==', 0).then(c.put(key).value('{}')).commit();
      }
      c.close();`;
    const storeScript = storeAllocScript(each);
    const rawMs = [];
    const storeMs = [];
    for (let rep = 0; rep < (QUICK ? 1 : 3); rep++) {
      run += 1;
      let t0 = process.hrtime.bigint();
      await spawnAll(rawScript, (p) => [etcd.endpoint, `/rawp${run}`, String(p)]);
      rawMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
      t0 = process.hrtime.bigint();
      const outs = await spawnAll(storeScript, () => [etcd.url(`storep${run}`)]);
      storeMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
      const macs = outs.join('').trim().split('\n');
      if (macs.length !== procs * each || new Set(macs).size !== macs.length) throw new Error(`64 processes: ${macs.length} MACs, ${macs.length - new Set(macs).size} duplicates`);
    }
    const rp = record('etcd throughput', `${procs} processes x ${each} plain create-if-absent: total`, 'ms', rawMs);
    const sp = record('etcd throughput', `${procs} processes x ${each} store allocations: total`, 'ms', storeMs, { note: '0 duplicates' });
    sp.ratio = sp.median / rp.median;
    console.log(`${''.padEnd(22)} 64 processes, store / raw: ${sp.ratio.toFixed(2)}x`);

    // The CLI: 64 at once, each running `uncloud-vm mac allocate` `rounds` times in a row (a new process each
    // time), beside 64 at once each running as many node processes that load etcd3 and do one plain transaction.
    const rounds = QUICK ? 1 : 2;
    const oneRaw = `
      const { Etcd3 } = require('etcd3');
      const c = new Etcd3({ hosts: process.argv[1] });
      const key = process.argv[2] + '/macs/' + process.argv[3];
      c.if(key, 'Create', '==', 0).then(c.put(key).value('{}')).commit().then(() => c.close());`;
    const inTurn = (args, env) => Promise.all(Array.from({ length: procs }, async (_, p) => {
      const out = [];
      for (let i = 0; i < rounds; i++) {
        out.push(await new Promise((res, rej) => {
          const c = spawn(process.execPath, args(p, i), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
          let o = '';
          c.stdout.on('data', (d) => (o += d));
          c.on('close', (code) => (code === 0 ? res(o.trim()) : rej(new Error(`${args(p, i).slice(0, 3).join(' ')} exited ${code}`))));
        }));
      }
      return out;
    }));
    const rawCli = [];
    const cli = [];
    const dir = tmp('tpcli');
    for (let rep = 0; rep < (QUICK ? 1 : 3); rep++) {
      run += 1;
      let t0 = process.hrtime.bigint();
      await inTurn((p, i) => ['-e', oneRaw, etcd.endpoint, `/rawc${run}`, `${p}-${i}`], envFor(dir));
      rawCli.push(Number(process.hrtime.bigint() - t0) / 1e6);
      t0 = process.hrtime.bigint();
      const macs = (await inTurn(() => [BIN, 'mac', 'allocate'], envFor(dir, { UNCLOUD_VM_STORE: etcd.url(`cli${run}`) }))).flat();
      cli.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (new Set(macs).size !== procs * rounds) throw new Error(`64 x ${rounds} mac allocate: duplicates`);
    }
    const rc = record('etcd throughput', `${procs} at once x ${rounds} node processes: load etcd3, one create-if-absent`, 'ms', rawCli);
    const cc = record('etcd throughput', `${procs} at once x ${rounds} \`uncloud-vm mac allocate\``, 'ms', cli, { note: `${procs * rounds} distinct` });
    cc.ratio = cc.median / rc.median;
    console.log(`${''.padEnd(22)} CLI / raw processes: ${cc.ratio.toFixed(2)}x (target <= 1.5x)`);
  } finally {
    await etcd.remove();
  }
}

// What loading the etcd client costs one process (one at a time, interleaved with node -e 0).
function etcdImportCost() {
  const n = QUICK ? 7 : 21;
  const env = envFor(tmp('import'));
  const load = `require(${JSON.stringify(join(ROOT, 'node_modules/etcd3'))})`;
  const base = [];
  const full = [];
  for (let i = 0; i < n; i++) {
    base.push(timeSync(process.execPath, ['-e', '0'], env));
    full.push(timeSync(process.execPath, ['-e', load], env));
  }
  const b = record('etcd throughput', 'node -e 0', 'ms', base);
  const f = record('etcd throughput', "node -e \"require('etcd3')\"", 'ms', full);
  console.log(`${''.padEnd(22)} etcd3 costs a process ${(f.median - b.median).toFixed(1)} ms`);
}

// 3c. The agent re-asserting 10,000 running VMs' leases on a new etcd lease (after a restart or a lost lease).
async function agentReassert() {
  const { EtcdStore, parseStore, pool } = await etcdParts();
  const count = QUICK ? 2000 : 10000;
  const etcd = await startEtcd();
  try {
    const samples = [];
    const periodic = [];
    for (let rep = 0; rep < (QUICK ? 1 : 3); rep++) {
      const store = new EtcdStore({ target: parseStore(etcd.url(`agent${rep}`)), host: 'bench-host' });
      const owners = () => [{ pid: process.pid, startTime: 1 }];
      const fixture = { base: pool.base, first: 1, host: 'bench-host', owners };
      await writeEtcdLeases(etcd.endpoint, `/agent${rep}`, count, fixture);
      const expected = (await store.list()).leases;
      const { id, lease } = await store.takeLease();
      const t0 = process.hrtime.bigint();
      const r = await store.reassert(id, expected);
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (r.kept !== count) throw new Error(`agent re-assert: ${r.kept} of ${count} kept`);
      // The agent's periodic pass: the same leases again, on the same lease (known from the pass before).
      const t1 = process.hrtime.bigint();
      const again = await store.reassert(id, expected);
      periodic.push(Number(process.hrtime.bigint() - t1) / 1e6);
      if (again.kept !== count) throw new Error(`agent periodic pass: ${again.kept} of ${count} kept`);
      await lease.revoke();
      await store.close();
    }
    record('agent', `re-assert ${count.toLocaleString('en-US')} running VMs' leases on a new etcd lease`, 'ms', samples, { note: 'target <= 1000 ms at 10,000' });
    record('agent', `periodic pass over the same ${count.toLocaleString('en-US')} leases (nothing changed)`, 'ms', periodic);
  } finally {
    await etcd.remove();
  }
}

// 4 + 5. Launcher overhead and resident cost, with a fake qemu, in a namespace with a bridge.
async function launcher() {
  const ns = `uncloud-bench-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'add', 'br0', 'type', 'bridge']);
    const n = QUICK ? 5 : 15;
    const direct = [];
    const viaStart = [];
    const untilExec = [];
    const directExec = [];
    for (let i = 0; i < n; i++) {
      const dir = tmp('launch');
      const stamp = join(dir, 'started');
      const env = envFor(dir, { UNCLOUD_VM_QEMU: FAKE_QEMU, FAKE_QEMU_STARTED: stamp });
      mkdirSync(join(dir, 'run'), { recursive: true });
      let t0 = Date.now();
      direct.push(timeSync('ip', ['netns', 'exec', ns, FAKE_QEMU, '-pidfile', join(dir, 'direct.pid')], env));
      directExec.push(Number(readFileSync(stamp, 'utf8')) - t0);
      t0 = Date.now();
      viaStart.push(timeSync('ip', ['netns', 'exec', ns, process.execPath, BIN, 'start', '--accel', 'tcg', '--memory', '64'], env));
      untilExec.push(Number(readFileSync(stamp, 'utf8')) - t0);
    }
    const de = record('launcher', 'fake qemu run directly: until it is exec\'d', 'ms', directExec);
    const se = record('launcher', 'uncloud-vm start: until the fake qemu is exec\'d', 'ms', untilExec);
    console.log(`${''.padEnd(22)} launcher overhead until exec: ${(se.median - de.median).toFixed(1)} ms`);
    const d = record('launcher', 'fake qemu run directly (exits at once), whole run', 'ms', direct);
    const s = record('launcher', 'uncloud-vm start + the same fake qemu, until all is released', 'ms', viaStart);
    console.log(`${''.padEnd(22)} launcher overhead, whole run: ${(s.median - d.median).toFixed(1)} ms`);

    const rss = [];
    for (let i = 0; i < 3; i++) {
      const dir = tmp('rss');
      const env = envFor(dir, { UNCLOUD_VM_QEMU: FAKE_QEMU, FAKE_QEMU_SLEEP: '30' });
      const child = spawn('ip', ['netns', 'exec', ns, process.execPath, BIN, 'start', '--accel', 'tcg', '--memory', '64', '--name', 'rss'], { env, stdio: 'ignore' });
      const rec = join(dir, 'run', 'rss', 'vm.json');
      let pid;
      for (let t = 0; t < 200 && !pid; t++) {
        await new Promise((r) => setTimeout(r, 50));
        try {
          const j = JSON.parse(readFileSync(rec, 'utf8'));
          if (j.qemu) pid = j.launcher.pid;
        } catch {}
      }
      await new Promise((r) => setTimeout(r, 500));
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      rss.push(Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024);
      child.kill('SIGTERM');
      await new Promise((r) => child.on('close', r));
    }
    record('resident cost', 'foreground launcher RSS while its VM runs', 'MiB', rss);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

// 5b. A VM under a real systemd --user unit: what runs in its cgroup besides qemu, and stop → lease freed.
async function unitCost() {
  const guestDir = execFileSync('bash', [join(ROOT, 'scripts/build-test-guest.sh')], { encoding: 'utf8' }).trim().split('\n').pop();
  const ns = `uncloud-bench-u${process.pid}`;
  const dir = tmp('unit');
  const home = join(dir, 'home');
  const rt = join(dir, 'rt');
  mkdirSync(home, { recursive: true });
  mkdirSync(rt, { recursive: true, mode: 0o700 });
  execFileSync('ip', ['netns', 'add', ns]);
  let sd;
  try {
    for (const a of [['link', 'set', 'lo', 'up'], ['link', 'add', 'br0', 'type', 'bridge'], ['link', 'set', 'br0', 'up']]) execFileSync('ip', ['netns', 'exec', ns, 'ip', ...a]);
    const script = join(dir, 'sd.sh');
    writeFileSync(script, `set -e
mount -t tmpfs tmpfs /run/systemd; mkdir -p /run/systemd/system
if [ ! -d /sys/fs/cgroup/systemd ] && [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ]; then
  if grep -q 'name=systemd' /proc/self/cgroup; then
    mount -t tmpfs cgroup /sys/fs/cgroup; mkdir -p /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
    mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd; mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
  else mount -t cgroup2 cgroup2 /sys/fs/cgroup; fi
fi
export HOME=${home} XDG_RUNTIME_DIR=${rt}
exec /lib/systemd/systemd --user
`);
    sd = spawn('ip', ['netns', 'exec', ns, 'unshare', '-m', 'bash', script], { stdio: 'ignore', detached: true });
    const env = [`PATH=${process.env.PATH}`, `HOME=${home}`, `XDG_RUNTIME_DIR=${rt}`];
    const inside = (cmd, args) => spawnSync('nsenter', ['-t', String(sd.pid), '-m', '-n', 'env', ...env, cmd, ...args], { encoding: 'utf8' });
    const systemctl = (...a) => inside('systemctl', ['--user', ...a]);
    for (let i = 0; i < 200 && !/running|degraded/.test(systemctl('is-system-running').stdout); i++) await new Promise((r) => setTimeout(r, 100));
    const uvm = (...a) => inside(process.execPath, [BIN, '--state-dir', join(dir, 'state'), '--run-dir', join(dir, 'run'), '--config', join(ROOT, 'test/fixtures/empty-config.json'), ...a]);
    const inst = uvm('unit', 'benchvm', '--user', '--install', '--memory', '192', '--accel', 'tcg', '--kernel', join(guestDir, 'vmlinuz'),
      '--initrd', join(guestDir, 'initramfs.gz'), '--no-reboot', '--append', 'console=ttyS0 panic=-1 quiet', '--stop-timeout', '20');
    if (inst.status !== 0) throw new Error(`unit install: ${inst.stderr}`);
    const unit = 'uncloud-vm-benchvm.service';
    const serial = join(dir, 'state', 'logs', 'benchvm', 'serial.log');
    const extra = [];
    const extraProcs = [];
    const qemuRss = [];
    const stopMs = [];
    const bootMs = [];
    for (let rep = 0; rep < (QUICK ? 1 : 3); rep++) {
      rmSync(serial, { force: true });
      const tb = process.hrtime.bigint();
      if (systemctl('start', unit).status !== 0) throw new Error('unit start failed');
      for (let i = 0; i < 3000; i++) {
        try {
          if (/^UNCLOUD-READY/m.test(readFileSync(serial, 'utf8'))) break;
        } catch {}
        await new Promise((r) => setTimeout(r, 20));
      }
      bootMs.push(Number(process.hrtime.bigint() - tb) / 1e6);
      const mainPid = Number(systemctl('show', '-p', 'MainPID', '--value', unit).stdout.trim());
      const cg = systemctl('show', '-p', 'ControlGroup', '--value', unit).stdout.trim();
      const procs = inside('sh', ['-c', `cat /sys/fs/cgroup/systemd${cg}/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup${cg}/cgroup.procs`]).stdout.trim().split('\n').map(Number);
      const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
      const others = procs.filter((p) => p !== mainPid);
      extraProcs.push(others.length);
      extra.push(others.reduce((a, p) => a + rss(p), 0));
      qemuRss.push(rss(mainPid));
      const t0 = process.hrtime.bigint();
      systemctl('stop', unit);
      for (let i = 0; i < 400; i++) {
        if (JSON.parse(uvm('mac', 'list', '--json').stdout || '[]').length === 0) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      stopMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    record('resident cost', 'unit-managed VM: processes in its cgroup besides qemu', 'n', extraProcs);
    record('resident cost', 'unit-managed VM: RSS beyond qemu', 'MiB', extra, { note: 'target 0' });
    record('resident cost', 'unit-managed VM: qemu itself (192 MiB guest, for scale)', 'MiB', qemuRss);
    record('lifecycle', 'systemctl start → test guest ready (TCG boot, NICs up)', 'ms', bootMs);
    record('lifecycle', 'systemctl stop → guest powered off and lease free', 'ms', stopMs);
  } finally {
    if (sd) {
      try {
        process.kill(sd.pid, 'SIGKILL');
      } catch {}
    }
    spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout?.split('\n').filter(Boolean).forEach((p) => {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {}
    });
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

// 6. The NIC guard: bringing a guarded NIC up (the rendered ifup script: MAC, nft batch, bridge port, up)
// with no other guarded NIC, and with 1,000 guarded veth interfaces in the shared table; two namespaces,
// samples interleaved so both see the same machine state.
async function guard() {
  const { renderIfdown, renderIfup } = await import(join(ROOT, 'dist/system/nic-scripts.js'));
  const { guardBatch } = await import(join(ROOT, 'dist/core/nic-guard-rules.js'));
  const { nicAddresses } = await import(join(ROOT, 'dist/core/nic-allowed.js'));
  const { guardOptions, parseNic } = await import(join(ROOT, 'dist/core/nic-request.js'));
  const sizes = [0, 1000];
  const nsOf = (present) => `uncloud-vm-bench-guard${present}-${process.pid}`;
  const dir = tmp('guard');
  const inNs = (present, cmd, args, input) => {
    const r = spawnSync('ip', ['netns', 'exec', nsOf(present), cmd, ...args], { input, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  };
  const net = { prefixes: ['2001:db8:1::/64'], source: 'config', ipv6Only: false };
  const addressesOf = (mac, nic) => nicAddresses(mac, guardOptions(parseNic(nic, 0, 'br0')), net);
  const input = { vm: 'bench', index: 0, iface: 'benchnic', bridge: 'br0', mac: '42:00:00:ff:00:01', addresses: addressesOf(0x420000ff0001, 'br0,ip4=192.0.2.1') };
  writeFileSync(join(dir, 'ifup.sh'), renderIfup(input), { mode: 0o700 });
  writeFileSync(join(dir, 'ifdown.sh'), renderIfdown(input), { mode: 0o700 });
  const samples = { 0: [], 1000: [] };
  try {
    for (const present of sizes) {
      spawnSync('ip', ['netns', 'add', nsOf(present)]);
      inNs(present, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
      inNs(present, 'ip', ['link', 'set', 'br0', 'up']);
      if (present === 0) continue;
      inNs(present, 'ip', ['-batch', '-'], Array.from({ length: present }, (_, i) => `link add gd${i} type veth peer name gp${i}\n`).join(''));
      // One batch: the shared objects once, then every NIC's elements.
      const batches = Array.from({ length: present }, (_, i) => guardBatch(`gd${i}`, 0x420000000000 + i, addressesOf(0x420000000000 + i, `br0,ip4=10.${i >> 8}.${i & 255}.1`).allowed));
      inNs(present, 'nft', ['-f', '-'], batches.map((b, i) => (i === 0 ? b : `${b.split('\n').filter((l) => l.startsWith('add element')).join('\n')}\n`)).join(''));
    }
    for (let i = 0; i < (QUICK ? 10 : 30); i++) {
      for (const present of sizes) {
        inNs(present, 'ip', ['link', 'add', 'benchnic', 'type', 'veth', 'peer', 'name', 'benchpeer']);
        const t0 = process.hrtime.bigint();
        inNs(present, 'sh', [join(dir, 'ifup.sh'), 'benchnic']);
        samples[present].push(Number(process.hrtime.bigint() - t0) / 1e6);
        inNs(present, 'sh', [join(dir, 'ifdown.sh'), 'benchnic']);
      }
    }
    const zero = record('guard', 'ifup of a guarded NIC, no other guarded NIC', 'ms', samples[0]);
    const full = record('guard', 'ifup of a guarded NIC, 1000 other guarded NICs', 'ms', samples[1000]);
    full.ratio = full.median / zero.median;
    console.log(`${''.padEnd(22)} ratio 1000 guarded / 0 guarded: ${full.ratio.toFixed(2)}x (target <= 2x)`);
  } finally {
    for (const present of sizes) spawnSync('ip', ['netns', 'del', nsOf(present)]);
  }
}

try {
  console.log(`uncloud-vm bench${QUICK ? ' (quick)' : ''} — ${new Date().toISOString()}, node ${process.version}\n`);
  if (want('cli')) cliLatency();
  if (want('alloc')) await allocation();
  if (want('etcd')) await allocationEtcd();
  if (want('scaling')) await scaling();
  // The mac list rows with owners alone (the scaling section runs them too).
  else if (want('mac-list')) macListOwned((await import(join(ROOT, 'dist/core/mac.js'))).parsePool('42:00:00'), RUNS ?? (QUICK ? 3 : 11));
  if (want('throughput')) {
    etcdImportCost();
    await etcdThroughput();
  }
  if (want('agent')) await agentReassert();
  if (want('launcher')) await launcher();
  if (want('unit')) await unitCost();
  if (want('guard')) await guard();
  const outDir = join(ROOT, 'bench/results');
  mkdirSync(outDir, { recursive: true });
  const meta = { date: new Date().toISOString(), node: process.version, quick: QUICK };
  // Only a full run replaces the published figures; --quick or --only runs go beside them.
  const base = QUICK || only ? 'partial' : 'latest';
  writeFileSync(join(outDir, `${base}.json`), `${JSON.stringify({ ...meta, only: only ?? null, rows }, null, 2)}\n`);
  const md = [
    `# uncloud-vm bench — ${meta.date}${QUICK ? ' (quick)' : ''}`,
    '',
    '| section | figure | median | min | max | runs | note |',
    '| --- | --- | ---: | ---: | ---: | ---: | --- |',
    ...rows.map((r) => `| ${r.section} | ${r.name} | ${r.median.toFixed(1)} ${r.unit} | ${r.min.toFixed(1)} | ${r.max.toFixed(1)} | ${r.runs} | ${[r.ratio ? `${r.ratio.toFixed(2)}x` : '', r.note ?? ''].filter(Boolean).join('; ')} |`),
    '',
  ].join('\n');
  writeFileSync(join(outDir, `${base}.md`), md);
  console.log(`\nwritten: bench/results/${base}.json, bench/results/${base}.md`);
} finally {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
}
