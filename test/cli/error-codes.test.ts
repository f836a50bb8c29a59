/**
 * The CLI's error paths, called in process: each throws an UncloudError with the code and exit code the
 * table says (main.ts prints the message and exits with the exit code; test/cli/bad-input.test.ts spawns
 * the binary for that). Nothing here needs root, a bridge or qemu.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { agent } from '../../src/cli/commands/agent.js';
import { forget } from '../../src/cli/commands/forget.js';
import { hookAdopt, hookPrepare } from '../../src/cli/commands/hook.js';
import { logs } from '../../src/cli/commands/logs.js';
import { macAllocate, macRelease } from '../../src/cli/commands/mac.js';
import { networkShow } from '../../src/cli/commands/network.js';
import { pause, reboot } from '../../src/cli/commands/power.js';
import type { StartFlags } from '../../src/cli/commands/shared/start-options.js';
import { start } from '../../src/cli/commands/start.js';
import { status } from '../../src/cli/commands/status.js';
import { stop } from '../../src/cli/commands/stop.js';
import { unit } from '../../src/cli/commands/unit.js';
import { completion } from '../../src/cli/completion.js';
import { type Context, makeContext } from '../../src/cli/context.js';
import { type ErrorCode, UncloudError } from '../../src/core/errors.js';
import { ROOT } from '../helpers/cli.js';

const base = mkdtempSync(join(tmpdir(), 'uncloud-vm-error-codes-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

const quiet = { out: () => undefined, err: () => undefined };
const context = (): Context =>
  makeContext({ stateDir: join(base, 'state'), runDir: join(base, 'run'), config: join(ROOT, 'test/fixtures/empty-config.json') }, quiet);

/** commander's defaults for the start options. */
const startFlags = (more: Partial<StartFlags> = {}): StartFlags => ({ memory: '64', cores: '1', accel: 'tcg', machine: 'pc', ...more });

const cases: [string, (ctx: Context) => Promise<unknown> | unknown, ErrorCode, number][] = [
  ['stop: a VM name with a space', (ctx) => stop('web 1', {}, ctx), 'USAGE', 2],
  ['stop: --timeout not whole seconds', (ctx) => stop('web1', { timeout: '1.5' }, ctx), 'USAGE', 2],
  ['stop: a VM that does not run', (ctx) => stop('web1', {}, ctx), 'NOT_RUNNING', 1],
  ['status: a VM nobody knows', (ctx) => status('web1', {}, ctx), 'NO_VM', 1],
  ['start: --json without --dry-run or --detach', (ctx) => start(startFlags({ json: true }), ctx), 'USAGE', 2],
  ['start: --console with --detach', (ctx) => start(startFlags({ detach: true, console: true }), ctx), 'USAGE', 2],
  ['start: --stop-timeout too long', (ctx) => start(startFlags({ stopTimeout: '86401' }), ctx), 'USAGE', 2],
  ['start --dry-run: a --cdrom that is not there', (ctx) => start(startFlags({ dryRun: true, cdrom: join(base, 'none.iso') }), ctx), 'NO_FILE', 2],
  ['start --dry-run: --nic mac= outside the pool', (ctx) => start(startFlags({ dryRun: true, nic: ['bridge=br0,mac=42:10:00:00:00:01'] }), ctx), 'USAGE', 2],
  ['hook prepare: no --name', (ctx) => hookPrepare(startFlags(), ctx), 'USAGE', 2],
  ['hook adopt: no run record', (ctx) => hookAdopt('web1', ctx), 'NO_VM', 1],
  ['unit: --enable without --install', (ctx) => unit('web1', { ...startFlags(), enable: true }, ctx), 'USAGE', 2],
  ['unit: --dry-run', (ctx) => unit('web1', { ...startFlags(), dryRun: true }, ctx), 'USAGE', 2],
  ['agent: the file store', (ctx) => agent({}, ctx), 'USAGE', 2],
  ['mac allocate: an empty --vm', (ctx) => macAllocate({ vm: '' }, ctx), 'USAGE', 2],
  ['mac release: not a MAC', (ctx) => macRelease('42:00', {}, ctx), 'USAGE', 2],
  ['reboot: --timeout too long', (ctx) => reboot('web1', { timeout: '86401' }, ctx), 'USAGE', 2],
  ['pause: a VM that does not run', (ctx) => pause('web1', ctx), 'NOT_RUNNING', 1],
  ['logs: a VM with no logs', (ctx) => logs('web1', {}, ctx), 'NO_LOGS', 1],
  ['forget: a VM nobody knows', (ctx) => forget('web1', ctx), 'NO_VM', 1],
  ['network show: not a VNI', (ctx) => networkShow('vx1', {}, ctx), 'USAGE', 2],
  ['network show: a network not here', (ctx) => networkShow('4242', {}, ctx), 'NO_NETWORK', 1],
  ['completion: zsh', (ctx) => completion('zsh', new Command(), ctx), 'USAGE', 2],
];

describe('the CLI error paths throw the UncloudError their table row says', () => {
  it.each(cases)('%s: %s, exit %i', async (_what, run, code, exitCode) => {
    const ctx = context();
    try {
      const err = await Promise.resolve()
        .then(() => run(ctx))
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(UncloudError);
      expect({ code: (err as UncloudError).code, exitCode: (err as UncloudError).exitCode }).toEqual({ code, exitCode });
    } finally {
      await ctx.close();
    }
  });

  it('a bad global setting fails when the context is made: --prefix that is multicast', () => {
    const err = (() => {
      try {
        makeContext({ stateDir: base, runDir: base, prefix: '43:00:00', config: join(ROOT, 'test/fixtures/empty-config.json') }, quiet);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UncloudError);
    expect([(err as UncloudError).code, (err as UncloudError).exitCode]).toEqual(['USAGE', 2]);
  });
});
