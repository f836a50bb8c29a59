/**
 * A record that is no regular file (a FIFO or a directory in its place, made by hand or by a broken tool),
 * among good ones: every read verb finishes, names it, and still shows the rest; gc touches no good record.
 * Through the built CLI with the fake qemu; each run is killed after 30 s, so a verb that hangs fails here.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';

const fake = fakeQemuEnvironment({ env: { FAKE_QEMU_QMP: '1', FAKE_QEMU_SLEEP: '600' } });

/** A verb, SIGKILLed if it runs 30 s (it hangs). */
const verb = (args: string[]) => fake.run(args, {}, (c) => setTimeout(() => c.kill('SIGKILL'), 30_000).unref());

beforeEach(async () => {
  for (const name of ['a', 'b']) expect((await fake.start(['--name', name, '--detach'])).code).toBe(0);
  expect((await fake.run(['mac', 'allocate'])).code).toBe(0);
});

/** Put a FIFO or an empty directory where `path` is (or would be). */
function replace(path: string, by: 'fifo' | 'dir'): void {
  rmSync(path, { recursive: true, force: true });
  mkdirSync(join(path, '..'), { recursive: true });
  if (by === 'dir') mkdirSync(path);
  else execFileSync('mkfifo', [path]);
}

describe('a record that is no regular file', () => {
  for (const by of ['dir', 'fifo'] as const) {
    it(`a ${by} for a lease, a conflict record, a VM record, the host index marker, the pool file, a VM's run record and its reboot mark: every read verb finishes, names it, shows the rest`, async () => {
      const lease = join(fake.sb.stateDir, 'leases', '420000000003.json');
      const keepA = readFileSync(join(fake.sb.stateDir, 'leases', '420000000001.json'), 'utf8');
      replace(lease, by);
      replace(join(fake.sb.stateDir, 'conflicts', '420000000009.json'), by);
      replace(join(fake.sb.runDir, 'b', 'reboot.json'), by);
      replace(join(fake.sb.stateDir, 'vms', 'b.json'), by);
      const list = await verb(['list']);
      expect(list.signal).toBeNull();
      expect(list.stdout).toMatch(/^a +running/m);
      expect(list.stdout).toMatch(/^b +running/m);
      expect(list.stderr).toContain(join(fake.sb.stateDir, 'vms', 'b.json'));
      const macs = await verb(['mac', 'list']);
      expect(macs.signal).toBeNull();
      expect(macs.stdout).toContain('42:00:00:00:00:01');
      expect(macs.stderr).toContain(lease);
      expect(macs.stderr).toContain('420000000009.json');
      for (const name of ['a', 'b']) {
        const st = await verb(['status', name]);
        expect(st.signal).toBeNull();
        expect(st.code, st.stderr).toBe(0);
      }
      const gc = await verb(['gc']);
      expect(gc.signal).toBeNull();
      expect(gc.stderr).toContain(lease);
      expect(readFileSync(join(fake.sb.stateDir, 'leases', '420000000001.json'), 'utf8')).toBe(keepA);
      // The host index's marker: list reads every lease instead; gc, which writes it, says it cannot.
      replace(join(fake.sb.stateDir, 'hosts', '.complete'), by);
      expect((await verb(['list'])).stdout).toMatch(/^b +running/m);
      const gc2 = await verb(['gc']);
      expect(gc2.signal).toBeNull();
      // (a directory stays in the way, named; a FIFO is replaced by the marker)
      const marker = join(fake.sb.stateDir, 'hosts', '.complete');
      expect(gc2.stderr.includes(marker) || statSync(marker).isFile()).toBe(true);
      rmSync(marker, { recursive: true });
      // The pool's own file: mac pool and mac allocate name it (an allocation needs its cursor).
      replace(join(fake.sb.stateDir, 'pool.json'), by);
      for (const args of [['mac', 'pool'], ['mac', 'allocate']]) {
        const r = await verb(args);
        expect(r.signal).toBeNull();
        expect(r.code).toBe(1);
        expect(r.stderr.trim().split('\n')).toEqual([expect.stringContaining(join(fake.sb.stateDir, 'pool.json'))]);
      }
      // A VM's run record replaced: status names it, and the VM is still found.
      replace(join(fake.sb.runDir, 'a', 'vm.json'), by);
      const st = await verb(['status', 'a']);
      expect(st.signal).toBeNull();
      expect(st.stderr).toContain(join(fake.sb.runDir, 'a', 'vm.json'));
      expect(st.stdout).toMatch(/running/);
    });
  }
});
