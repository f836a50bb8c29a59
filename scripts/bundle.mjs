#!/usr/bin/env node
// Part of `npm run build`: the one-file CommonJS build of the CLI that bin/uncloud-vm.cjs runs, and its V8
// code cache. commander, execa, proper-lockfile and uuid are inside it; the modules the CLI imports on demand
// (execa when qemu is spawned, proper-lockfile when the file store locks, uuid for a named VM) stay behind
// rolldown's lazy initialisers, so they cost a command nothing until it uses them. etcd3 stays outside and is
// required at first use (see lazyModule), so only commands with an etcd store pay for gRPC and protobuf.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT = join(ROOT, 'dist/bundle/uncloud-vm.cjs');
// Loaded at first use, also when imported statically: etcd3 (~150 ms of gRPC and protobuf), and every Node
// module but the few that node itself has loaded before any code runs.
const EAGER_NODE = new Set(['node:fs', 'node:path', 'node:events', 'node:process', 'node:os', 'node:url']);
const isLazy = (id) => id === 'etcd3' || (id.startsWith('node:') && !EAGER_NODE.has(id));

/**
 * A module imported statically but needed only by some commands: required on first use of any export. Each
 * export is a proxy that forwards every use (call, new, property, instanceof, extends) to the real one.
 */
function lazyModule(name) {
  const real = createRequire(join(ROOT, 'package.json'))(name);
  const names = Object.keys(real).filter((n) => /^[A-Za-z_$][\w$]*$/.test(n) && n !== 'default');
  return [
    `let loaded;`,
    `const real = () => (loaded ??= require(${JSON.stringify(name)}));`,
    `const lazy = (get) => {`,
    `  const proxy = new Proxy(function () {}, {`,
    `    construct: (_t, args, target) => Reflect.construct(get(), args, target === proxy ? get() : target),`,
    `    apply: (_t, self, args) => Reflect.apply(get(), self, args),`,
    `    get: (_t, p) => get()[p],`,
    `    has: (_t, p) => p in get(),`,
    `    set: (_t, p, v) => ((get()[p] = v), true),`,
    `  });`,
    `  return proxy;`,
    `};`,
    ...names.map((n) => `export const ${n} = lazy(() => real()[${JSON.stringify(n)}]);`),
    `export default lazy(() => real());`,
  ].join('\n');
}

const lazyPlugin = {
  name: 'uncloud-vm-on-demand',
  resolveId(id, importer) {
    if (!isLazy(id)) return null;
    // The lazy module's own require is the real, external one.
    return importer?.startsWith('\0lazy:') ? { id, external: true } : `\0lazy:${id}`;
  },
  load(id) {
    return id.startsWith('\0lazy:') ? lazyModule(id.slice('\0lazy:'.length)) : null;
  },
  renderChunk(code) {
    // Code run from a V8 code cache cannot call import() on Node 20: every package must be bundled or required.
    const left = /\bimport\(\s*["'][^"']+["']\s*\)/.exec(code.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ''));
    if (left) throw new Error(`bundle: a dynamic ${left[0]} is left; bundle that package or make it lazy`);
    return code.replace(/^#!.*\n/, ''); // the loader wraps the code in a function
  },
};

// Built beside the installed files and renamed over them, so a command started meanwhile finds a whole bundle
// (with the old cache V8 refuses the new bundle's code cache and compiles as usual).
const NEXT = `${dirname(OUT)}.next`;
rmSync(NEXT, { recursive: true, force: true });
mkdirSync(dirname(OUT), { recursive: true });
await build({
  input: join(ROOT, 'src/cli/main.ts'),
  platform: 'node',
  external: (id) => EAGER_NODE.has(id),
  plugins: [lazyPlugin],
  logLevel: 'warn',
  output: { file: join(NEXT, 'uncloud-vm.cjs'), format: 'cjs', codeSplitting: false, minify: false },
});

// The code cache: run the commands whose start-up matters in one process, then save what V8 compiled.
const r = spawnSync(process.execPath, [join(ROOT, 'scripts/code-cache.cjs'), join(NEXT, 'uncloud-vm.cjs')], { encoding: 'utf8', env: { PATH: process.env.PATH } });
if (r.status !== 0) throw new Error(`code cache: ${r.stderr || r.stdout}`);
renameSync(join(NEXT, 'uncloud-vm.cjs'), OUT);
renameSync(join(NEXT, 'uncloud-vm.cjs.v8cache'), `${OUT}.v8cache`);
rmSync(NEXT, { recursive: true, force: true });
const size = (p) => (readFileSync(p).length / 1024).toFixed(0);
console.log(`bundle: ${OUT} (${size(OUT)} KiB), code cache ${size(`${OUT}.v8cache`)} KiB`);
