#!/usr/bin/env node
'use strict';
// The uncloud-vm command. It runs the build in dist/bundle/ (made by `npm run build`): an entry chunk that
// requires the chunk of the command being run, and of the packages it uses, when it needs them. Each chunk
// is compiled with the V8 code cache made beside it at build time, so a command spends its time on its
// work rather than on parsing and compiling JavaScript. A cache from another Node version is refused by V8
// and not used. (Code compiled this way cannot call import() on Node 20: the build's import()s are requires
// of chunk files, and etcd3 is required when an etcd store is first used.)
const { closeSync, openSync, readSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');

const DEFAULT_DIR = join(__dirname, '..', 'dist', 'bundle');
const ENTRY = 'uncloud-vm.cjs';

/**
 * The code caches to try for a chunk, best first. The entry has one per verb whose start-up matters, holding
 * only what that verb's commands run (V8 reads a whole cache, and the verb's is a third to half smaller), and
 * one for every command: the verb is taken to be the first argument, as users write it; when it is not (a
 * global option first), the cache for every command serves. A dry run has one of its own: it stops before the
 * allocation and the launch that a start's cache also holds (~20% less to read). Which cache is taken never
 * changes what a command does (V8 refuses one made for other code, and then compiles as it goes).
 */
function cachesOf(file, args = process.argv) {
  const verb = file === ENTRY ? args[2] : undefined;
  if (verb === undefined || !/^[a-z]+$/.test(verb)) return [`${file}.v8cache`];
  const dryRun = verb === 'start' && args.includes('--dry-run') ? [`${file}.${verb}-dry-run.v8cache`] : [];
  return [...dryRun, `${file}.${verb}.v8cache`, `${file}.v8cache`];
}

// One buffer that every chunk and cache is read into (a chunk's source is copied out of it as a string, and
// V8 has taken a cache in before the next read): no buffer, stat or read-whole-file helper per file. This and
// the rest of start-up use the same few fs calls (openSync, readSync, closeSync), which Node compiles once.
let buf = Buffer.allocUnsafe(512 * 1024);

/** The bytes of the file at path, in buf (grown when the file does not fit). */
function readWhole(path) {
  const fd = openSync(path, 'r');
  try {
    let n = 0;
    for (let r; (r = readSync(fd, buf, n, buf.length - n, null)) > 0; ) {
      n += r;
      if (n === buf.length) buf = Buffer.concat([buf, Buffer.allocUnsafe(buf.length)]);
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** A chunk compiled, not run, with the first of its code caches there is (script.cachedDataRejected: V8's verdict). */
function compileChunk(dir, file, caches = cachesOf(file)) {
  const path = join(dir, file);
  let source;
  try {
    source = readWhole(path).toString();
  } catch {
    process.stderr.write(`uncloud-vm: ${path} is missing: run 'npm run build' first\n`);
    process.exit(1);
  }
  let cachedData;
  for (const cache of caches) {
    try {
      cachedData = readWhole(join(dir, cache));
      break;
    } catch {
      // no such cache: the next one, or compile as usual
    }
  }
  return new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: path, cachedData });
}

/**
 * The build in dir, ready to run: run() requires its entry chunk, which runs the command in process.argv;
 * load(file) requires one chunk.
 * scripts (file name to compiled chunk) may be shared between builds, to run several commands on the same
 * compiled code, and caches (file name to the code caches to try) overrides cachesOf (the code-cache builder
 * does both).
 */
function compile(dir = DEFAULT_DIR, scripts = new Map(), caches = cachesOf) {
  const modules = new Map();
  const load = (file) => {
    const loaded = modules.get(file);
    if (loaded) return loaded.exports;
    let script = scripts.get(file);
    if (!script) scripts.set(file, (script = compileChunk(dir, file, caches(file))));
    const module = { exports: {} };
    // Registered before it runs: chunks that require each other get the exports made so far.
    modules.set(file, module);
    script.runInThisContext()(module.exports, requireFrom, module, join(dir, file), dir);
    return module.exports;
  };
  // A chunk's require: another chunk of the build, or a package or Node module (resolved from this file,
  // which shares the build's node_modules).
  const requireFrom = (id) => (id.startsWith('./') ? load(id.slice(2)) : require(id));
  return { scripts, load, run: () => load(ENTRY) };
}

if (require.main === module) compile().run();
else module.exports = { compile, compileChunk, cachesOf, DEFAULT_DIR, ENTRY };
