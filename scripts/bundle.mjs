#!/usr/bin/env node
// Part of `npm run build`: the CommonJS build of the CLI that bin/uncloud-vm.cjs runs (dist/bundle/: an entry
// chunk, one chunk per command module and per package loaded on demand) and a V8 code cache per chunk.
// commander, execa, proper-lockfile and uuid are inside it; the packages the CLI imports on demand (execa when
// qemu is spawned, proper-lockfile when the file store locks, uuid for a named VM) are chunks of their own, so
// they cost a command nothing until it uses them. etcd3 stays outside and is required at first use (see
// lazyModule), so only commands with an etcd store pay for gRPC and protobuf.
// The entry, the verbs whose start-up is measured (start, mac) and every module they import statically are one
// chunk, "core" (with rolldown's runtime helpers copied in, as in every chunk): a dry run or `mac pool` reads and
// compiles one file and its cache, not twenty (each chunk costs a read of it and of its cache, and a compile).
// What a start loads once it is past the dry-run stage (prepare, supervise, reconcile, the templates…) is one
// chunk too, "launch". The templates are inlined: a start reads no template file.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const OUT_DIR = join(ROOT, 'dist/bundle');
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
    // Pure: the build keeps only the exports something imports (a proxy each, made at start-up).
    ...names.map((n) => `export const ${n} = /* @__PURE__ */ lazy(() => real()[${JSON.stringify(n)}]);`),
    `export default /* @__PURE__ */ lazy(() => real());`,
  ].join('\n');
}

/** The CommonJS form of lazyModule: the module's exports, each required on first use of any. */
function lazyCommonJs(name) {
  return [
    `let loaded;`,
    `module.exports = new Proxy({}, {`,
    `  get: (_t, p) => (loaded ??= require(${JSON.stringify(name)}))[p],`,
    `  has: (_t, p) => p in (loaded ??= require(${JSON.stringify(name)})),`,
    `});`,
  ].join('\n');
}

// The modules of the core chunk: these and all they import statically (a dynamic import stays a chunk of its own).
const CORE_ROOTS = ['src/cli/main.ts', 'src/cli/commands/start.ts', 'src/cli/commands/mac.ts'].map((f) => join(ROOT, f));
// The launch chunk: our modules that these import dynamically (a start past its dry run), and what those import
// statically, less the core. Packages stay chunks of their own (execa only for a detached start).
const LAUNCH_IMPORTERS = ['src/cli/commands/start.ts', 'src/cli/commands/shared/start-plan.ts'].map((f) => join(ROOT, f));
const staticImports = new Map();
const dynamicImports = new Map();
const closure = (roots, skip = () => false) => {
  const found = new Set();
  const todo = [...roots];
  for (let m; (m = todo.pop()) !== undefined; ) {
    if (found.has(m) || skip(m)) continue;
    found.add(m);
    todo.push(...(staticImports.get(m) ?? []));
  }
  return found;
};
const ours = (id) => id.startsWith(join(ROOT, 'src') + '/');
let core;
let launch;
const inCore = (id) => (core ??= closure(CORE_ROOTS)).has(id);
const inLaunch = (id) =>
  (launch ??= closure(
    LAUNCH_IMPORTERS.flatMap((m) => dynamicImports.get(m) ?? []).filter(ours),
    (m) => !ours(m) || inCore(m),
  )).has(id);

/** templates/ as a map of file name to text, for src/system/templates.ts in the build. */
function templates() {
  const dir = join(ROOT, 'templates');
  return Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f), 'utf8')]));
}
const INLINED_RE = /const INLINED(?:: [^=]+)? = undefined;/;

const lazyPlugin = {
  name: 'uncloud-vm-on-demand',
  moduleParsed(info) {
    staticImports.set(info.id, info.importedIds);
    dynamicImports.set(info.id, info.dynamicallyImportedIds);
  },
  transform(code, id) {
    if (id !== join(ROOT, 'src/system/templates.ts')) return null;
    if (!INLINED_RE.test(code)) throw new Error('bundle: src/system/templates.ts has no INLINED to fill');
    return code.replace(INLINED_RE, `const INLINED = ${JSON.stringify(templates())};`);
  },
  resolveId(id, importer, extra) {
    if (id === 'graceful-fs') return '\0node-fs';
    if (!isLazy(id)) return null;
    // The lazy module's own require is the real, external one.
    if (importer?.startsWith('\0lazy')) return { id, external: true };
    // A package's require() of it (commander's of node:child_process): one proxy for the whole module. The lazy
    // ES module would be copied whole for it, a getter and a proxy per export made at every start.
    return extra?.kind === 'require-call' ? `\0lazy-cjs:${id}` : `\0lazy:${id}`;
  },
  load(id) {
    // proper-lockfile's graceful-fs is Node's own fs here: graceful-fs copies and patches all of fs when it
    // loads (~9 ms of every locking command), to retry opens on EMFILE, which a lock directory never meets.
    if (id === '\0node-fs') return "module.exports = require('node:fs');";
    if (id.startsWith('\0lazy-cjs:')) return lazyCommonJs(id.slice('\0lazy-cjs:'.length));
    return id.startsWith('\0lazy:') ? lazyModule(id.slice('\0lazy:'.length)) : null;
  },
  renderChunk(code) {
    // Code run from a V8 code cache cannot call import() on Node 20: every package must be bundled or required
    // (rolldown writes the import() of a chunk as a require of its file).
    const left = /\bimport\(\s*["'][^"']+["']\s*\)/.exec(code.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ''));
    if (left) throw new Error(`bundle: a dynamic ${left[0]} is left; bundle that package or make it lazy`);
    return code.replace(/^#!.*\n/, ''); // the loader wraps the code in a function
  },
  generateBundle(_options, bundle) {
    // rolldown's runtime helpers (__toESM and the like, 2 KiB without state) copied into each chunk that uses
    // them, in place of a chunk of their own: one file less to read and compile for every command.
    const entry = RUNTIME_RE.exec(bundle['uncloud-vm.cjs'].code);
    if (!entry) throw new Error('bundle: the entry requires no rolldown runtime chunk; update RUNTIME_RE');
    const runtime = bundle[entry[2]].code;
    delete bundle[entry[2]];
    for (const chunk of Object.values(bundle)) {
      const at = chunk.type === 'chunk' ? RUNTIME_RE.exec(chunk.code) : null;
      if (at) chunk.code = chunk.code.replace(at[0], `const ${at[1]} = (() => {\nconst exports = {};\n${runtime}\nreturn exports;\n})();`);
    }
  },
};
const RUNTIME_RE = /\bconst (\w+) ?= ?require\("\.\/(rolldown-runtime-[\w-]+\.cjs)"\);/;

// Built beside the installed files and swapped in whole, so a command started meanwhile finds one build, not
// half of each.
const NEXT = `${OUT_DIR}.next`;
const OLD = `${OUT_DIR}.old`;
rmSync(NEXT, { recursive: true, force: true });
rmSync(OLD, { recursive: true, force: true });
await build({
  input: { 'uncloud-vm': join(ROOT, 'src/cli/main.ts') },
  platform: 'node',
  external: (id) => EAGER_NODE.has(id),
  plugins: [lazyPlugin],
  logLevel: 'warn',
  // A module of the core chunk is in the entry on purpose: an import() of it there is a no-op, not a mistake.
  onLog(level, log, handler) {
    if (log.code !== 'INEFFECTIVE_DYNAMIC_IMPORT' || !inCore(log.id)) handler(level, log);
  },
  // The core chunk, the launch chunk, then one chunk per other command module and per package loaded on demand
  // (execa, proper-lockfile, uuid), so a command compiles and runs only what it uses; each chunk's import() is
  // a require of its file.
  output: {
    dir: NEXT,
    format: 'cjs',
    entryFileNames: '[name].cjs',
    chunkFileNames: '[name]-[hash].cjs',
    minify: false,
    // Less source to read and decode, and all of it one-byte (ASCII) strings for V8.
    comments: false,
    charset: 'ascii',
    codeSplitting: {
      groups: [
        { name: 'core', test: inCore },
        { name: 'launch', test: inLaunch },
      ],
    },
  },
});

// The code caches: run the commands whose start-up matters in one process, then save what V8 compiled for
// each chunk beside it. A start runs whole (qemu: /bin/true) when it has a bridge: in a user, network and mount
// namespace of its own where the build may make one (no root needed, nothing on the host touched). Where
// such namespaces are not allowed, a start runs up to its bridge check, and the rest of a start's path is
// compiled when it first runs (~10 ms more for a start, the same output).
const NS_BRIDGE = 'mount -t sysfs sysfs /sys && ip link add uvm-code-cache type bridge && ip link set uvm-code-cache up';
const inNamespace = spawnSync('unshare', ['--user', '--map-root-user', '--net', '--mount', 'sh', '-c', NS_BRIDGE], { stdio: 'ignore' }).status === 0;
const codeCache = [process.execPath, join(ROOT, 'scripts/code-cache.cjs'), NEXT];
const [cmd, ...args] = inNamespace ? ['unshare', '--user', '--map-root-user', '--net', '--mount', 'sh', '-c', `${NS_BRIDGE} && exec "$@"`, 'sh', ...codeCache] : codeCache;
const r = spawnSync(cmd, args, { encoding: 'utf8', env: { PATH: process.env.PATH } });
if (r.status !== 0) throw new Error(`code cache: ${r.stderr || r.stdout}`);
if (!inNamespace) console.log('bundle: no user namespace for a bridge: the code caches hold a start up to its bridge check');
if (existsSync(OUT_DIR)) renameSync(OUT_DIR, OLD);
renameSync(NEXT, OUT_DIR);
rmSync(OLD, { recursive: true, force: true });
const sizeOf = (ext) => readdirSync(OUT_DIR).filter((f) => f.endsWith(ext)).reduce((n, f) => n + statSync(join(OUT_DIR, f)).size, 0);
const kib = (n) => (n / 1024).toFixed(0);
console.log(`bundle: ${OUT_DIR} (${readdirSync(OUT_DIR).filter((f) => f.endsWith('.cjs')).length} chunks, ${kib(sizeOf('.cjs'))} KiB), code caches ${kib(sizeOf('.v8cache'))} KiB`);
