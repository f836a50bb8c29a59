/** `logs`, log rotation and a failed detached start, through the built binary with a fake qemu. */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOG_CAP_BYTES } from '../../src/system/vm-logs.js';
import { cli } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';

const fake = fakeQemuEnvironment();
const { start } = fake;
const logDir = (name: string) => join(fake.sb.stateDir, 'logs', name);

describe('logs', () => {
  it('each start appends to the logs; a log over the cap is rotated to .1 at start, and logs prints both, older first', async () => {
    expect((await start(['--name', 'rot'])).code).toBe(0);
    expect((await start(['--name', 'rot'])).code).toBe(0);
    const serial = join(logDir('rot'), 'serial.log');
    expect(readFileSync(serial, 'utf8').match(/^-- uncloud-vm: VM rot .* starting at .* --$/gm)).toHaveLength(2);
    expect(statSync(logDir('rot')).mode & 0o777).toBe(0o700);
    expect(statSync(serial).mode & 0o777).toBe(0o600);

    // A guest that wrote more than the cap, without a final newline.
    writeFileSync(serial, `${'x'.repeat(LOG_CAP_BYTES)}\nlast line of the old run`);
    expect((await start(['--name', 'rot'])).code).toBe(0);
    expect(readFileSync(`${serial}.1`, 'utf8').endsWith('last line of the old run')).toBe(true);
    expect(readFileSync(serial, 'utf8')).toMatch(/^-- uncloud-vm: VM rot .* --\n$/);
    const out = await cli(['logs', 'rot'], { env: fake.sb.env });
    expect(out.code).toBe(0);
    expect(out.stdout.length).toBeGreaterThan(LOG_CAP_BYTES);
    expect(out.stdout).toMatch(/last line of the old run\n-- uncloud-vm: VM rot .* --\n$/);
  });

  it('--qemu prints qemu\'s stderr log; a VM with logs but an empty serial log prints nothing', async () => {
    mkdirSync(logDir('w1'), { recursive: true, mode: 0o700 });
    writeFileSync(join(logDir('w1'), 'qemu.log'), 'qemu-system-x86_64: warning: something\n');
    const r = await cli(['logs', 'w1', '--qemu'], { env: fake.sb.env });
    expect(r.stdout).toBe('qemu-system-x86_64: warning: something\n');
    expect((await cli(['logs', 'w1'], { env: fake.sb.env })).stdout).toBe('');
  });

  it('a detached start that fails: exit 1, the whole stderr, nothing on stdout, nothing remembered, the run dir gone', async () => {
    const said = 'qemu-system-x86_64: -netdev tap: could not open /dev/net/tun\nqemu-system-x86_64: second line';
    const r = await start(['--name', 'dfail', '--detach', '--json'], { FAKE_QEMU_EXIT: '1', FAKE_QEMU_STDERR: said });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`uncloud-vm: qemu failed to start (exit code 1); qemu said:\n  ${said.replace('\n', '\n  ')}\n`);
    expect(JSON.parse((await cli(['list', '--json'], { env: fake.sb.env })).stdout)).toEqual([]);
    expect(existsSync(join(fake.sb.runDir, 'dfail'))).toBe(false);
    expect(readFileSync(join(logDir('dfail'), 'qemu.log'), 'utf8')).toContain(said);
  });
});
