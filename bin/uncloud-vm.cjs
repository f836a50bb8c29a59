#!/usr/bin/env node
'use strict';
// The uncloud-vm command. It runs the one-file build (dist/bundle/uncloud-vm.cjs, made by `npm run build`)
// with the V8 code cache made beside it at build time, so a command spends its time on its work rather than
// on parsing and compiling JavaScript. A cache from another Node version is refused by V8 and not used.
// (Code compiled this way cannot call import() on Node 20: the bundle holds every package it imports, and
// requires etcd3 when an etcd store is first used.)
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');

const DEFAULT_BUNDLE = join(__dirname, '..', 'dist', 'bundle', 'uncloud-vm.cjs');

/** The bundle compiled (with the code cache when there is one), and a function that runs it once. */
function compile(BUNDLE = DEFAULT_BUNDLE) {
  const CODE_CACHE = `${BUNDLE}.v8cache`;
  let source;
  try {
    source = readFileSync(BUNDLE, 'utf8');
  } catch {
    process.stderr.write(`uncloud-vm: ${BUNDLE} is missing: run 'npm run build' first\n`);
    process.exit(1);
  }
  let cachedData;
  try {
    cachedData = readFileSync(CODE_CACHE);
  } catch {
    // no cache: compile as usual
  }
  const wrapped = `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
  const script = new Script(wrapped, { filename: BUNDLE, cachedData });
  const run = () => {
    const mod = { exports: {} };
    // This file's require resolves packages from the same node_modules as the bundle's would.
    script.runInThisContext()(mod.exports, require, mod, BUNDLE, join(BUNDLE, '..'));
  };
  return { script, run, CODE_CACHE };
}

if (require.main === module) compile().run();
else module.exports = { compile };
