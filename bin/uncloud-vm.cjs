#!/usr/bin/env node
'use strict';
// The uncloud-vm command. It runs the build in dist/bundle/ (made by `npm run build`): an entry chunk that
// requires the chunk of the command being run, and of the packages it uses, when it needs them. Each chunk
// is compiled with the V8 code cache made beside it at build time, so a command spends its time on its
// work rather than on parsing and compiling JavaScript. A cache from another Node version is refused by V8
// and not used. (Code compiled this way cannot call import() on Node 20: the build's import()s are requires
// of chunk files, and etcd3 is required when an etcd store is first used.)
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');

const DEFAULT_DIR = join(__dirname, '..', 'dist', 'bundle');
const ENTRY = 'uncloud-vm.cjs';

/** A chunk compiled, not run, with its code cache when there is one (script.cachedDataRejected: V8's verdict). */
function compileChunk(dir, file) {
  const path = join(dir, file);
  let source;
  try {
    source = readFileSync(path, 'utf8');
  } catch {
    process.stderr.write(`uncloud-vm: ${path} is missing: run 'npm run build' first\n`);
    process.exit(1);
  }
  let cachedData;
  try {
    cachedData = readFileSync(`${path}.v8cache`);
  } catch {
    // no cache: compile as usual
  }
  return new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: path, cachedData });
}

/**
 * The build in dir, ready to run: run() requires its entry chunk, which runs the command in process.argv;
 * load(file) requires one chunk.
 * scripts (file name → compiled chunk) may be shared between builds, to run several commands on the same
 * compiled code (the code-cache builder does).
 */
function compile(dir = DEFAULT_DIR, scripts = new Map()) {
  const modules = new Map();
  const load = (file) => {
    const loaded = modules.get(file);
    if (loaded) return loaded.exports;
    let script = scripts.get(file);
    if (!script) scripts.set(file, (script = compileChunk(dir, file)));
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
else module.exports = { compile, compileChunk, DEFAULT_DIR, ENTRY };
