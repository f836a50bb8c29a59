/**
 * Files that are not what they should be, in places the record tests (unreadable-records.test.ts) do not
 * cover: a VM's serial log, the host index's marker, a run record read by status. Each is named in one line;
 * nothing hangs (a run is killed after 30 s), and the rest goes on. Through the built CLI with the fake qemu.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';
import { liveQemus } from '../helpers/invariants.js';

const fake = fakeQemuEnvironment({ env: { FAKE_QEMU_QMP: '1', FAKE_QEMU_SLEEP: '600' } });

/** A verb, SIGKILLed if it runs 30 s (it hangs). */
const verb = (args: string[]) => fake.run(args, {}, (c) => setTimeout(() => c.kill('SIGKILL'), 30_000).unref());

function replace(path: string, by: 'fifo' | 'dir'): void {
  rmSync(path, { recursive: true, force: true });
  if (by === 'dir') mkdirSync(path);
  else execFileSync('mkfifo', [path]);
}

describe("a VM's serial log that is no regular file", () => {
  for (const by of ['fifo', 'dir'] as const) {
    it(`a ${by}: logs names it (exit 1, no hang); start names it, takes nothing and writes no log; logs --qemu still prints`, async () => {
      expect((await fake.start(['--name', 'web', '--detach'])).code).toBe(0);
      expect((await fake.run(['stop', 'web', '--force'])).code).toBe(0);
      const serial = join(fake.sb.stateDir, 'logs', 'web', 'serial.log');
      const kind = by === 'fifo' ? 'a FIFO' : 'a directory';
      const line = `uncloud-vm: log ${serial} is ${kind}, not a regular file; it was left untouched: remove it\n`;
      replace(serial, by);
      const logs = await verb(['logs', 'web']);
      expect([logs.signal, logs.code, logs.stdout, logs.stderr]).toEqual([null, 1, '', line]);
      const qemuLog = await verb(['logs', 'web', '--qemu']);
      expect([qemuLog.code, qemuLog.stdout]).toEqual([0, expect.stringContaining('-- uncloud-vm: VM web')]);
      const qemuLogPath = join(fake.sb.stateDir, 'logs', 'web', 'qemu.log');
      const before = readFileSync(qemuLogPath, 'utf8');
      const start = await verb(['start', '--accel', 'tcg', '--memory', '64', '--name', 'web', '--detach']);
      expect([start.signal, start.code, start.stdout]).toEqual([null, 1, '']);
      expect(start.stderr.trim().split('\n').at(-1)).toBe(line.trim());
      // Nothing taken, nothing left: the MACs given back, no run dir, no qemu, the other log not written to.
      expect(liveQemus(fake.sb.runDir)).toEqual([]);
      expect(await fake.leases()).toEqual([]);
      expect(readdirSync(fake.sb.runDir).filter((e) => !e.startsWith('.'))).toEqual([]);
      expect(readFileSync(qemuLogPath, 'utf8')).toBe(before);
      expect((await fake.run(['gc'])).stderr).toBe('uncloud-vm: gc: nothing to reclaim\n');
    });
  }
});

describe('the host index marker is a directory', () => {
  it("gc still reclaims a dead VM's MAC and run dir, names the marker and exits 1; list names it too", async () => {
    for (const name of ['a', 'b']) expect((await fake.start(['--name', name, '--detach'])).code).toBe(0);
    const b = liveQemus(fake.sb.runDir).find((q) => q.name === 'b')!;
    process.kill(b.pid, 'SIGKILL');
    const marker = join(fake.sb.stateDir, 'hosts', '.complete');
    replace(marker, 'dir');
    const named = `host index marker ${marker} is damaged (a directory, not a regular file); it was left untouched: repair or remove it`;
    const gc = await verb(['gc']);
    expect(gc.code).toBe(1);
    expect(gc.stdout).toContain(`freed ${b.macs[0]} (VM b nic0)`);
    expect(gc.stdout).toContain('removed run dir b');
    expect(gc.stderr).toBe(`uncloud-vm: damaged record left untouched: ${named}\n`);
    expect((await fake.leases()).map((l) => l.vm?.name)).toEqual(['a']);
    const list = await verb(['list']);
    expect([list.code, list.stderr]).toEqual([0, `uncloud-vm: damaged record skipped: ${named}\n`]);
    expect(list.stdout).toMatch(/^a +running/m);
    // Removed, the next gc writes the marker again and finds nothing else.
    rmSync(marker, { recursive: true });
    const again = await verb(['gc']);
    expect([again.code, again.stderr]).toEqual([0, 'uncloud-vm: gc: nothing to reclaim\n']);
    expect(readFileSync(marker, 'utf8')).toMatch(/^[0-9a-f-]+\n$/);
  });
});

describe('a run record that is a FIFO', () => {
  it('status names it plainly ("not a regular file"), not with a made-up error code', async () => {
    expect((await fake.start(['--name', 'a', '--detach'])).code).toBe(0);
    const record = join(fake.sb.runDir, 'a', 'vm.json');
    replace(record, 'fifo');
    const st = await verb(['status', 'a']);
    expect(st.code).toBe(0);
    expect(st.stderr).toContain(`${record}`);
    expect(st.stderr).toContain('cannot be read (not a regular file)');
    expect(st.stderr).not.toContain('ENOTREG');
  });
});

describe('a config file that is no regular file, or a path with a newline', () => {
  it('a FIFO or a directory as --config: one line naming it, exit 1, no hang; a newline in the path stays on the line', async () => {
    const base = join(fake.sb.stateDir, '..');
    const fifo = join(base, 'config.fifo');
    execFileSync('mkfifo', [fifo]);
    const r = await verb(['--config', fifo, 'list']);
    expect([r.signal, r.code, r.stderr]).toEqual([null, 1, `uncloud-vm: cannot read config file ${fifo}: it is not a regular file (a FIFO, socket or device)\n`]);
    const dir = join(base, 'config.d');
    mkdirSync(dir);
    const d = await verb(['--config', dir, 'list']);
    expect([d.code, d.stderr]).toEqual([1, `uncloud-vm: cannot read config file ${dir}: it is a directory\n`]);
    const nl = await verb(['--config', `${base}/a\nb.json`, 'list']);
    expect([nl.code, nl.stderr]).toEqual([2, `uncloud-vm: config file ${base}/a\\nb.json does not exist\n`]);
  });
});
