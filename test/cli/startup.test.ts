/**
 * What the installed command loads: the build's chunks with code caches this Node accepts, and each package
 * only for the commands that use it. commander is in every command's entry chunk; proper-lockfile when the
 * file store locks, uuid for a name-derived UUID, execa when qemu is to be spawned, etcd3 (outside the build)
 * with an etcd store.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
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

// graceful-fs is Node's own fs in the build (scripts/bundle.mjs)
const PROPER_LOCKFILE = ['proper-lockfile', 'retry'];

describe('start-up', () => {
  it('the build is chunked, and this Node accepts the code cache of every chunk', () => {
    const { compileChunk, DEFAULT_DIR, ENTRY } = createRequire(import.meta.url)(join(ROOT, 'bin/uncloud-vm.cjs')) as {
      compileChunk: (dir: string, file: string) => { cachedDataRejected?: boolean };
      DEFAULT_DIR: string;
      ENTRY: string;
    };
    const chunks = readdirSync(DEFAULT_DIR).filter((f) => f.endsWith('.cjs'));
    expect(chunks).toContain(ENTRY);
    expect(chunks.length).toBeGreaterThan(10);
    for (const file of chunks) expect([file, compileChunk(DEFAULT_DIR, file).cachedDataRejected]).toEqual([file, false]);
  });

  it.each([
    [['start', '--dry-run', '--memory', '1024', '--cores', '2']],
    [['mac', 'pool']],
    [['mac', 'allocate']],
  ])('%j compiles the entry chunk (with the start and mac verbs) and the runtime, nothing else of ours', async (args) => {
    const r = await loaded(args);
    expect(r.chunks.filter((c) => c !== 'proper-lockfile')).toEqual(['rolldown-runtime', 'uncloud-vm']);
  });

  it('the build holds templates/ as it is', () => {
    const bin = createRequire(import.meta.url)(join(ROOT, 'bin/uncloud-vm.cjs')) as {
      compile: () => { load: (file: string) => Record<string, unknown> };
      DEFAULT_DIR: string;
    };
    const file = readdirSync(bin.DEFAULT_DIR).find((f) => /^templates-.*\.cjs$/.test(f));
    expect(file).toBeDefined();
    const source = readFileSync(join(bin.DEFAULT_DIR, file!), 'utf8');
    // Inlined: the chunk's loadTemplate answers without reading templates/.
    const { loadTemplate } = bin.compile().load(file!) as { loadTemplate: (name: string) => string };
    for (const name of readdirSync(join(ROOT, 'templates'))) {
      expect([name, loadTemplate(name)]).toEqual([name, readFileSync(join(ROOT, 'templates', name), 'utf8')]);
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
