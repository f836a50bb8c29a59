/**
 * What the installed command loads: the build's chunks with code caches this Node accepts, and each package
 * only for the commands that use it. commander is in every command's entry chunk; proper-lockfile when the
 * file store locks, uuid for a name-derived UUID, execa when qemu is to be spawned, etcd3 (outside the build)
 * with an etcd store.
 */
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, ROOT, sandbox } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';

const sb = sandbox({ NODE_OPTIONS: `-r ${join(ROOT, 'test/fixtures/loaded-packages.cjs')}` });
afterAll(() => sb.cleanup());

async function loaded(args: string[]): Promise<{ code: number | null; packages: string[]; chunks: string[] }> {
  const r = await cli(args, { env: sb.env });
  const line = /^loaded-packages: (.*)$/m.exec(r.stderr);
  const chunks = /^loaded-chunks: (.*)$/m.exec(r.stderr);
  expect(line, r.stderr).not.toBeNull();
  expect(chunks, r.stderr).not.toBeNull();
  return { code: r.code, packages: line![1]!.split(',').filter(Boolean), chunks: chunks![1]!.split(',').filter(Boolean) };
}

/** A copy of the command (bin/uncloud-vm.cjs beside its own dist/bundle), run as cli() runs the built one. */
function runBin(bin: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env, encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });
}

// graceful-fs is Node's own fs in the build (scripts/bundle.mjs)
const PROPER_LOCKFILE = ['proper-lockfile', 'retry'];

describe('start-up', () => {
  it('the build is chunked, and this Node accepts the code cache of every chunk', () => {
    const { compileChunk, cachesOf, DEFAULT_DIR, ENTRY } = createRequire(import.meta.url)(join(ROOT, 'bin/uncloud-vm.cjs')) as {
      compileChunk: (dir: string, file: string, caches?: string[]) => { cachedDataRejected?: boolean };
      cachesOf: (file: string, args: string[]) => string[];
      DEFAULT_DIR: string;
      ENTRY: string;
    };
    const chunks = readdirSync(DEFAULT_DIR).filter((f) => f.endsWith('.cjs'));
    expect(chunks).toContain(ENTRY);
    expect(chunks.length).toBeGreaterThan(10);
    for (const file of chunks) expect([file, compileChunk(DEFAULT_DIR, file).cachedDataRejected]).toEqual([file, false]);
    // The entry's caches for the verbs whose start-up is measured: there, accepted, and smaller than the one for
    // every command (so they are the ones taken, and they hold less).
    const size = (cache: string) => statSync(join(DEFAULT_DIR, cache)).size;
    for (const verb of ['start', 'mac']) {
      const [own, all] = cachesOf(ENTRY, ['node', 'uncloud-vm', verb]);
      expect([own, all]).toEqual([`${ENTRY}.${verb}.v8cache`, `${ENTRY}.v8cache`]);
      expect([verb, compileChunk(DEFAULT_DIR, ENTRY, [own!]).cachedDataRejected]).toEqual([verb, false]);
      expect(size(own!)).toBeLessThan(size(all!));
    }
    // A dry run: its own cache first, accepted, and smaller than a start's (it holds no allocation or launch).
    const [dry, start] = cachesOf(ENTRY, ['node', 'uncloud-vm', 'start', '--memory', '1024', '--dry-run']);
    expect([dry, start]).toEqual([`${ENTRY}.start-dry-run.v8cache`, `${ENTRY}.start.v8cache`]);
    expect(compileChunk(DEFAULT_DIR, ENTRY, [dry!]).cachedDataRejected).toBe(false);
    expect(size(dry!)).toBeLessThan(size(start!));
    // A global option first: the cache for every command.
    expect(cachesOf(ENTRY, ['node', 'uncloud-vm', '--state-dir', '/x', 'start'])).toEqual([`${ENTRY}.v8cache`]);
    expect(cachesOf('launch-x.cjs', ['node', 'uncloud-vm', 'start'])).toEqual(['launch-x.cjs.v8cache']);
  });

  // The code caches only speed a command up: without them, or with caches V8 refuses (made for other code, or
  // cut short), every command says and does the same.
  describe.each([
    ['missing', (dir: string, cache: string) => rmSync(join(dir, cache))],
    ['made for another chunk', (dir: string, cache: string, other: string) => copyFileSync(join(dir, other), join(dir, cache))],
    ['cut short', (dir: string, cache: string) => writeFileSync(join(dir, cache), readFileSync(join(dir, cache)).subarray(0, 64))],
  ])('with the code caches %s', (what, spoil) => {
    const copy = mkdtempSync(join(tmpdir(), 'uncloud-vm-test-build-'));
    afterAll(() => rmSync(copy, { recursive: true, force: true }));
    const bin = join(copy, 'bin', 'uncloud-vm.cjs');
    const dir = join(copy, 'dist', 'bundle');
    mkdirSync(join(copy, 'bin'));
    cpSync(join(ROOT, 'bin', 'uncloud-vm.cjs'), bin);
    cpSync(join(ROOT, 'dist', 'bundle'), dir, { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    const caches = readdirSync(dir).filter((f) => f.endsWith('.v8cache'));
    const other = caches.find((f) => f.startsWith('launch-'))!;
    for (const cache of caches) if (cache !== other) spoil(dir, cache, other);
    if (what === 'missing') spoil(dir, other, other);

    it.each([
      [['start', '--dry-run', '--memory', '1024', '--cores', '2', '--uuid', 'c1b6a1e4-0b8c-4d4e-9d2a-6f1e2b3c4d5e']],
      [['start', '--dry-run', '--json', '--name', 'web1']],
      [['mac', 'pool']],
      [['mac', 'allocate']],
      [['list']],
      [['--help']],
      [['start', '--memory', 'lots']],
      [['nonsense']],
    ])('%j', async (args) => {
      const spoiled = sandbox();
      const built = sandbox();
      try {
        const [a, b] = await Promise.all([runBin(bin, args, spoiled.env), cli(args, { env: built.env })]);
        // Each run has a sandbox of its own.
        const same = (text: string, sb: { stateDir: string }) => text.replaceAll(dirname(sb.stateDir), '<sandbox>');
        expect({ code: a.code, stdout: same(a.stdout, spoiled), stderr: same(a.stderr, spoiled) }).toEqual({ code: b.code, stdout: same(b.stdout, built), stderr: same(b.stderr, built) });
      } finally {
        spoiled.cleanup();
        built.cleanup();
      }
    });
  });

  it.each([
    [['start', '--dry-run', '--memory', '1024', '--cores', '2']],
    [['mac', 'pool']],
    [['mac', 'allocate']],
  ])('%j compiles the entry chunk (with the start and mac verbs, and rolldown\'s runtime), nothing else of ours', async (args) => {
    const r = await loaded(args);
    expect(r.chunks.filter((c) => c !== 'proper-lockfile')).toEqual(['uncloud-vm']);
  });

  it('the build holds templates/ as it is', () => {
    const dir = join(ROOT, 'dist', 'bundle');
    // The templates are in the chunk a start loads past its dry run.
    const file = readdirSync(dir).find((f) => f.endsWith('.cjs') && readFileSync(join(dir, f), 'utf8').includes('function loadTemplate('));
    expect(file).toBeDefined();
    const source = readFileSync(join(dir, file!), 'utf8');
    // The chunk requires the entry, which runs the command in argv: in a process of its own, as `--version`.
    const probe = `
      process.argv = [process.argv[0], 'uncloud-vm', '--version'];
      process.exit = () => undefined;
      const { loadTemplate } = require(${JSON.stringify(join(ROOT, 'bin/uncloud-vm.cjs'))}).compile().load(${JSON.stringify(file)});
      const names = require('node:fs').readdirSync(${JSON.stringify(join(ROOT, 'templates'))});
      process.stdout.write('\\n' + JSON.stringify(Object.fromEntries(names.map((n) => [n, loadTemplate(n)]))) + '\\n');`;
    const out = execFileSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
    // (The version comes after it: the command runs on once the chunk is loaded.)
    const loaded = JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!) as Record<string, string>;
    const names = readdirSync(join(ROOT, 'templates'));
    expect(Object.keys(loaded).sort()).toEqual([...names].sort());
    for (const name of names) {
      expect([name, loaded[name]]).toEqual([name, readFileSync(join(ROOT, 'templates', name), 'utf8')]);
      // Inlined: loadTemplate answers without reading templates/.
      expect(source).toContain(JSON.stringify(name));
    }
  });

  it.each([
    [['start', '--dry-run', '--memory', '1024', '--cores', '2'], 0, []],
    [['mac', 'pool'], 0, []],
    [['list'], 0, []],
    [['gc'], 0, []],
    [['stop', 'web1'], 1, []],
    [['--help'], 0, []],
    [['mac', 'allocate'], 0, PROPER_LOCKFILE],
    [['start', '--dry-run', '--name', 'web1'], 0, ['uuid']],
    [['unit', 'web1'], 0, ['uuid']],
  ])('%j exits %i and loads commander and %j, nothing else', async (args, code, want) => {
    const r = await loaded(args);
    expect({ code: r.code, packages: r.packages }).toEqual({ code, packages: ['commander', ...want].sort() });
  });

  it('a start that stops before qemu is spawned loads neither execa nor etcd3', async () => {
    const r = await loaded(['start', '--accel', 'tcg', '--memory', '64', '--qemu', '/bin/true', '--nic', 'bridge=uvmnobridge0']);
    expect(r.code).toBe(1);
    expect(r.packages).not.toContain('execa');
    expect(r.packages).not.toContain('etcd3');
  });

  it('an etcd store loads etcd3, and neither execa nor proper-lockfile', async () => {
    const { packages } = await loaded(['--store', 'etcd://127.0.0.1:1', 'mac', 'pool']);
    expect(packages).toContain('etcd3');
    expect(packages).not.toContain('execa');
    expect(packages).not.toContain('proper-lockfile');
  });
});

describe('start-up of a VM (fake qemu)', () => {
  const fq = fakeQemuEnvironment({ env: { NODE_OPTIONS: `-r ${join(ROOT, 'test/fixtures/loaded-packages.cjs')}` } });
  /** The launcher's lines: the last ones (the fake qemu, a node process too, prints its own before it). */
  const last = (stderr: string, what: string): string[] => [...stderr.matchAll(new RegExp(`^${what}: (.*)$`, 'gm'))].at(-1)![1]!.split(',').filter(Boolean);

  it('a foreground start spawns qemu with node:child_process: no execa (nor etcd3) until qemu is exec\'d or after', async () => {
    const r = await fq.start([]);
    expect(r.code, r.stderr).toBe(0);
    expect(last(r.stderr, 'loaded-packages')).toEqual(['commander', ...PROPER_LOCKFILE].sort());
  });

  it('a detached start spawns qemu with execa', async () => {
    const r = await fq.start(['--name', 'bg', '--detach'], { FAKE_QEMU_QMP: '1', FAKE_QEMU_SLEEP: '30' });
    expect(r.code, r.stderr).toBe(0);
    expect(last(r.stderr, 'loaded-packages')).toContain('execa');
    expect(last(r.stderr, 'loaded-packages')).not.toContain('etcd3');
    expect((await fq.run(['stop', 'bg'])).code).toBe(0);
  });
});
