// Part of `npm run build` (scripts/bundle.mjs): run the commands whose start-up matters, in one process and
// against a throw-away state dir, then save the code V8 compiled for each chunk as that chunk's code cache
// (<chunk>.cjs.v8cache). A chunk no command here ran gets the cache of its compiled top level.
// The entry chunk also gets a cache per verb of VERB_CACHES (<entry>.<verb>.v8cache, which bin/uncloud-vm.cjs
// prefers when the verb comes first), and one for a dry run (<entry>.start-dry-run.v8cache): each made in a
// process of its own that runs only those commands, so it holds what they compiled and no more (V8 reads a
// cache whole: a dry run's is ~190 KiB, a start's ~240 KiB, every command's ~300 KiB).
// Usage: node scripts/code-cache.cjs <build dir> [a key of VERB_CACHES: only that cache of the entry]
'use strict';
const { spawnSync } = require('node:child_process');
const { mkdtempSync, readdirSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { compile, compileChunk, ENTRY } = require('../bin/uncloud-vm.cjs');

/** The entry's caches besides the one for every command: name and the commands (of COMMANDS) it is made of. */
const VERB_CACHES = {
  start: (args) => args[0] === 'start',
  'start-dry-run': (args) => args[0] === 'start' && args.includes('--dry-run'),
  mac: (args) => args[0] === 'mac',
};

const COMMANDS = [
  ['start', '--dry-run', '--memory', '1024', '--cores', '2'],
  ['start', '--dry-run', '--json', '--name', 'cache'],
  ['mac', 'pool'],
  ['mac', 'allocate'],
  ['mac', 'list'],
  ['list'],
  ['gc'],
  ['--help'],
  // A whole start, /bin/true as qemu, on the bridge the build makes in a network namespace (scripts/bundle.mjs);
  // without it, up to the bridge check.
  ['start', '--accel', 'tcg', '--memory', '64', '--qemu', '/bin/true', '--nic', 'bridge=uvm-code-cache'],
];

/**
 * execa's first call compiles most of execa: make one as the launcher does (a gate on fd 3, stderr appended
 * to a file), so start's path to qemu is in the cache too (the commands above stop before qemu is spawned).
 */
async function spawnOnce(dir, build) {
  const file = readdirSync(dir).find((f) => /^execa-.*\.cjs$/.test(f));
  if (!file) throw new Error(`no execa chunk in ${dir}`);
  // The build that ran the last command: its entry has run, so loading a chunk runs no command again.
  const { execa } = build.load(file);
  const tmp = mkdtempSync(join(tmpdir(), 'uncloud-vm-code-cache-'));
  try {
    const child = execa('/bin/sh', ['-c', 'read go <&3'], {
      reject: false,
      stdio: ['ignore', 'ignore', ['pipe', { file: join(tmp, 'stderr.log'), append: true }], 'pipe'],
      detached: true,
      cleanup: true,
    });
    child.stderr?.on('data', () => undefined);
    child.stdio[3].end('go\n');
    const r = await child;
    if (r.exitCode !== 0) throw new Error(`execa warm-up: ${r.message}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Run commands one after the other on one compiled build (compiled without any cache); its last build. */
async function runAll(dir, commands, scripts) {
  const tmp = mkdtempSync(join(tmpdir(), 'uncloud-vm-code-cache-'));
  Object.assign(process.env, {
    UNCLOUD_VM_STATE_DIR: join(tmp, 'state'),
    UNCLOUD_VM_RUN_DIR: join(tmp, 'run'),
    UNCLOUD_VM_CONFIG: join(__dirname, '..', 'test', 'fixtures', 'empty-config.json'),
  });
  let last;
  // The commands write their lines to fds 1 and 2 (the build discards them); help and the like go through
  // the process streams, quietened here.
  const exit = process.exit;
  const write = process.stdout.write;
  const writeErr = process.stderr.write;
  const quiet = (_chunk, ...rest) => {
    const cb = rest.find((r) => typeof r === 'function');
    if (cb) cb();
    return true;
  };
  try {
    for (const args of commands) {
      // The CLI ends with process.exit once its output is out: here that ends one command, not the process.
      await new Promise((resolve) => {
        process.exit = () => resolve();
        process.argv = [process.execPath, 'uncloud-vm', ...args];
        process.stdout.write = quiet;
        process.stderr.write = quiet;
        last = compile(dir, scripts, () => []);
        last.run();
      });
    }
  } finally {
    process.exit = exit;
    process.stdout.write = write;
    process.stderr.write = writeErr;
    process.exitCode = 0;
    rmSync(tmp, { recursive: true, force: true });
  }
  return last;
}

async function main() {
  const [dir, verb] = process.argv.slice(2);
  const scripts = new Map();
  if (verb !== undefined) {
    await runAll(dir, COMMANDS.filter(VERB_CACHES[verb]), scripts);
    writeFileSync(join(dir, `${ENTRY}.${verb}.v8cache`), scripts.get(ENTRY).createCachedData());
    return;
  }
  for (const v of Object.keys(VERB_CACHES)) {
    const r = spawnSync(process.execPath, [__filename, dir, v], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`code cache for ${v}: ${r.stderr || r.stdout}`);
  }
  const last = await runAll(dir, COMMANDS, scripts);
  await spawnOnce(dir, last);
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cjs'))) {
    const script = scripts.get(file) ?? compileChunk(dir, file, []);
    writeFileSync(join(dir, `${file}.v8cache`), script.createCachedData());
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
