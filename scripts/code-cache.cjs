// Part of `npm run build` (scripts/bundle.mjs): run the commands whose start-up matters, in one process and
// against a throw-away state dir, then save the code V8 compiled for them as the bundle's code cache.
// Usage: node scripts/code-cache.cjs <bundle> (writes <bundle>.v8cache).
'use strict';
const { mkdtempSync, rmSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { compile } = require('../bin/uncloud-vm.cjs');

const COMMANDS = [
  ['start', '--dry-run', '--memory', '1024', '--cores', '2'],
  ['start', '--dry-run', '--json', '--name', 'cache'],
  ['mac', 'pool'],
  ['mac', 'allocate'],
  ['mac', 'list'],
  ['list'],
  ['gc'],
  ['--help'],
  // start up to the point where it would need a bridge: this loads execa and the launcher without a VM.
  ['start', '--accel', 'tcg', '--memory', '64', '--qemu', '/bin/true', '--nic', 'bridge=uvm-code-cache'],
];

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-code-cache-'));
  Object.assign(process.env, {
    UNCLOUD_VM_STATE_DIR: join(dir, 'state'),
    UNCLOUD_VM_RUN_DIR: join(dir, 'run'),
    UNCLOUD_VM_CONFIG: join(__dirname, '..', 'test', 'fixtures', 'empty-config.json'),
  });
  const { script, run, CODE_CACHE } = compile(process.argv[2]);
  const exit = process.exit;
  const write = process.stdout.write;
  const writeErr = process.stderr.write;
  const quiet = (_chunk, ...rest) => {
    const cb = rest.find((r) => typeof r === 'function');
    if (cb) cb();
    return true;
  };
  try {
    for (const args of COMMANDS) {
      // The CLI ends with process.exit once stdout drained: here that ends one command, not the process.
      await new Promise((resolve) => {
        process.exit = () => resolve();
        process.argv = [process.execPath, 'uncloud-vm', ...args];
        process.stdout.write = quiet;
        process.stderr.write = quiet;
        run();
      });
    }
  } finally {
    process.exit = exit;
    process.stdout.write = write;
    process.stderr.write = writeErr;
    process.exitCode = 0;
    rmSync(dir, { recursive: true, force: true });
  }
  writeFileSync(CODE_CACHE, script.createCachedData());
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
