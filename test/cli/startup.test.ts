/**
 * What the installed command loads: the one-file bundle with a code cache this Node accepts, and the heavy
 * packages only for the commands that use them: everything but etcd3 is inside the bundle, and etcd3 is
 * required only with an etcd store.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli, ROOT, sandbox } from '../helpers/cli.js';

const sb = sandbox({ NODE_OPTIONS: `-r ${join(ROOT, 'test/fixtures/loaded-packages.cjs')}` });
afterAll(() => sb.cleanup());

async function loaded(args: string[]): Promise<{ code: number | null; packages: string[] }> {
  const r = await cli(args, { env: sb.env });
  const line = /^loaded-packages: (.*)$/m.exec(r.stderr);
  expect(line, r.stderr).not.toBeNull();
  return { code: r.code, packages: line![1]!.split(',').filter(Boolean) };
}

describe('start-up', () => {
  it('the bundle and its code cache are built, and this Node accepts the cache', () => {
    const { compile } = createRequire(import.meta.url)(join(ROOT, 'bin/uncloud-vm.cjs')) as {
      compile: () => { script: { cachedDataRejected?: boolean } };
    };
    expect(compile().script.cachedDataRejected).toBe(false);
  });

  it.each([
    [['start', '--dry-run', '--memory', '1024', '--cores', '2'], []],
    [['mac', 'pool'], []],
    [['list'], []],
    [['mac', 'allocate'], []],
  ])('%j loads %j and nothing of etcd', async (args, want) => {
    const { code, packages } = await loaded(args);
    expect(code).toBe(0);
    expect(packages).toEqual(want);
  });

  it('an etcd store loads etcd3', async () => {
    const { packages } = await loaded(['--store', 'etcd://127.0.0.1:1', 'mac', 'pool']);
    expect(packages).toContain('etcd3');
  });
});
