// For `npm run bench` (the cli section): what one package costs a process as the installed command loads it.
// Usage: node scripts/lib/load-chunk.cjs <chunk name>|-
// Runs the build's entry chunk as `uncloud-vm --version` does, then (unless '-') the chunk whose file name
// starts with "<chunk name>-" and every chunk it requires, reading each export (which runs lazy initialisers).
// The difference between the two is the chunk's cost.
'use strict';
const { readdirSync } = require('node:fs');
const { join } = require('node:path');
const { compileChunk, DEFAULT_DIR, ENTRY } = require('../../bin/uncloud-vm.cjs');

const want = process.argv[2];
process.argv = [process.argv[0], 'uncloud-vm', '--version'];
const modules = new Map();
const load = (file) => {
  const loaded = modules.get(file);
  if (loaded) return loaded.exports;
  const module = { exports: {} };
  modules.set(file, module);
  const req = (id) => (id.startsWith('./') ? load(id.slice(2)) : require(id));
  compileChunk(DEFAULT_DIR, file).runInThisContext()(module.exports, req, module, join(DEFAULT_DIR, file), DEFAULT_DIR);
  return module.exports;
};
const exit = process.exit;
// The entry ends the process once `--version` is printed: load the chunk just before.
process.exit = () => {
  if (want !== '-') {
    const file = readdirSync(DEFAULT_DIR).find((f) => f.startsWith(`${want}-`) && f.endsWith('.cjs'));
    if (!file) throw new Error(`no chunk ${want}-*.cjs in ${DEFAULT_DIR}`);
    const exports = load(file);
    for (const k of Object.keys(exports)) void exports[k];
  }
  exit();
};
load(ENTRY);
