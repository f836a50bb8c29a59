/**
 * The operator's verbs on the real test guest: console, pause/resume, reset, reboot, an honest stop while
 * another QMP client is connected, logs that outlive the VM, forget, and what --detach prints.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BIN, cli, waitFor } from '../helpers/cli.js';
import { guestEnvironment } from '../helpers/e2e.js';
import { serialLogOf } from '../helpers/guest.js';
import { qmpConnect } from '../helpers/qmp-raw.js';

const e = guestEnvironment(['br0']);

const run = (args: string[]) => cli(args, { env: e.sb.env, netns: e.ns.name });
const guestArgs = (extra = '') => [
  '--accel', 'tcg', '--memory', '192', '--kernel', e.guest.kernel, '--initrd', e.guest.initrd, '--no-reboot',
  '--append', `console=ttyS0 panic=-1 quiet ${extra}`.trim(),
];
const serial = (name: string) => (existsSync(serialLogOf(e.sb, name)) ? readFileSync(serialLogOf(e.sb, name), 'utf8') : '');
const count = (name: string, re: RegExp) => (serial(name).match(re) ?? []).length;
const boots = (name: string) => count(name, /^UNCLOUD-READY/gm);
const booted = (name: string, n: number) => waitFor(`${name}: boot ${n}`, () => boots(name) >= n, 120_000);
const status = async (name: string) => JSON.parse((await run(['status', name, '--json'])).stdout);
const detach = async (name: string, extra: string[] = []) => {
  const r = await run(['start', '--name', name, '--detach', ...extra, ...guestArgs()]);
  expect(r.code, r.stderr).toBe(0);
  return r;
};

/** The CLI with a pipe on stdin, as a person at a terminal would type into it. */
function interactive(args: string[]) {
  const child = spawn('ip', ['netns', 'exec', e.ns.name, process.execPath, BIN, ...args], { env: e.sb.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return { child, done, out: () => stdout, err: () => stderr };
}

describe('console', () => {
  it('a line typed on the console reaches the guest and its answer comes back; a second console is refused; Ctrl-] detaches', async () => {
    const started = await detach('con1');
    expect(started.stdout).toBe('con1\n');
    await booted('con1', 1);

    const c = interactive(['console', 'con1']);
    await waitFor('attached', () => /connected to the serial console of VM con1; Ctrl-\] detaches/.test(c.err()));
    const second = await run(['console', 'con1']);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/^uncloud-vm: another console is attached to VM con1; only one at a time/);

    c.child.stdin.write('hello-from-the-host\n');
    await waitFor('the guest answers', () => /UNCLOUD-ECHO hello-from-the-host/.test(c.out()), 30_000);
    c.child.stdin.write('\x1d');
    expect(await c.done).toBe(0);
    expect(c.err()).toMatch(/detached from VM con1/);
    // Logged while attached, too.
    expect(serial('con1')).toMatch(/^UNCLOUD-ECHO hello-from-the-host/m);

    // Free again once the first one left.
    const again = interactive(['console', 'con1']);
    await waitFor('attached again', () => /connected to the serial console/.test(again.err()));
    again.child.stdin.write('\x1d');
    expect(await again.done).toBe(0);
    expect((await run(['stop', 'con1'])).stderr).toMatch(/VM con1 powered off after/);
  });

  it('start --console keeps the console on the terminal, both ways, and logs it', async () => {
    const fg = interactive(['start', '--name', 'fg1', '--console', ...guestArgs()]);
    await waitFor('ready on the terminal', () => /UNCLOUD-READY/.test(fg.out()), 120_000);
    fg.child.stdin.write('typed-on-stdin\n');
    await waitFor('answer on the terminal', () => /UNCLOUD-ECHO typed-on-stdin/.test(fg.out()), 30_000);
    expect(serial('fg1')).toMatch(/^UNCLOUD-READY/m);
    const refused = await run(['console', 'fg1']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/serial console is on the terminal of the 'start --console' that runs it/);
    fg.child.kill('SIGTERM');
    expect(await fg.done).toBe(0);
    expect(serial('fg1')).toMatch(/^UNCLOUD-POWEROFF/m);
  });
});

describe('power verbs', () => {
  it('pause (status paused), resume, reset (the guest boots again), reboot (powers off, boots again, same qemu)', async () => {
    const started = await run(['start', '--name', 'pw1', '--detach', '--json', ...guestArgs()]);
    expect(started.code, started.stderr).toBe(0);
    const info = JSON.parse(started.stdout);
    expect(info).toEqual({ name: 'pw1', uuid: expect.stringMatching(/^[0-9a-f-]{36}$/), macs: [expect.stringMatching(/^42:00:00:/)], pid: expect.any(Number) });
    await booted('pw1', 1);

    expect((await run(['pause', 'pw1'])).stderr).toMatch(/VM pw1 paused/);
    expect(await status('pw1')).toMatchObject({ state: 'paused', qemuStatus: 'paused', pid: info.pid });
    expect((await run(['pause', 'pw1'])).stderr).toMatch(/VM pw1 was already paused/);
    expect((await run(['resume', 'pw1'])).stderr).toMatch(/VM pw1 resumed/);
    expect(await status('pw1')).toMatchObject({ state: 'running', qemuStatus: 'running' });

    // Reset: under --no-reboot too, the same qemu runs on and the guest boots a second time.
    const reset = await run(['reset', 'pw1']);
    expect(reset.code, reset.stderr).toBe(0);
    await booted('pw1', 2);
    expect(count('pw1', /^UNCLOUD-POWEROFF/gm)).toBe(0);
    expect(await status('pw1')).toMatchObject({ state: 'running', pid: info.pid });

    const reboot = await run(['reboot', 'pw1']);
    expect(reboot.code, reboot.stderr).toBe(0);
    expect(reboot.stderr).toMatch(/VM pw1 powered off after [0-9.]+ s and is booting again/);
    await booted('pw1', 3);
    expect(count('pw1', /^UNCLOUD-POWEROFF/gm)).toBe(1);
    expect(await status('pw1')).toMatchObject({ state: 'running', qemuStatus: 'running', pid: info.pid, nics: [{ mac: info.macs[0] }] });

    // qemu's actions were put back: a power-off ends the VM again.
    const stop = await run(['stop', 'pw1']);
    expect(stop.stderr).toMatch(/VM pw1 powered off after/);
    expect(count('pw1', /^UNCLOUD-POWEROFF/gm)).toBe(2);
  }, 300_000);

  it('a guest that ignores the power button is not rebooted: a clear error, and it runs on', async () => {
    const r = await run(['start', '--name', 'deaf2', '--detach', ...guestArgs('uc.acpi=off')]);
    expect(r.code, r.stderr).toBe(0);
    await booted('deaf2', 1);
    const reboot = await run(['reboot', 'deaf2', '--timeout', '3']);
    expect(reboot.code).toBe(1);
    expect(reboot.stderr).toMatch(/VM deaf2: the guest did not power off within 3 s; it runs on unchanged\. 'uncloud-vm reset deaf2' resets it at once/);
    expect(await status('deaf2')).toMatchObject({ state: 'running', qemuStatus: 'running' });
    await run(['stop', 'deaf2', '--force']);
  });
});

describe('stop tells the truth', () => {
  it('with another client on the operator QMP socket, stop still powers the guest off, and says so', async () => {
    await detach('q1');
    await booted('q1', 1);
    const st = await status('q1');
    const other = await qmpConnect(st.qmpSocket);
    try {
      const stop = await run(['stop', 'q1']);
      expect(stop.code, stop.stderr).toBe(0);
      expect(stop.stderr).toMatch(/ACPI power button pressed/);
      expect(stop.stderr).toMatch(/VM q1 powered off after/);
      expect(serial('q1')).toMatch(/^UNCLOUD-POWEROFF/m);
    } finally {
      other.close();
    }
  });

  it('stop right after --detach: the guest misses the first press while it boots and hears a later one', async () => {
    await detach('early');
    expect(boots('early')).toBe(0);
    const stop = await run(['stop', 'early', '--timeout', '90']);
    expect(stop.code, stop.stderr).toBe(0);
    expect(stop.stderr).toMatch(/power button pressed again/);
    expect(stop.stderr).toMatch(/VM early powered off after/);
    expect(serial('early')).toMatch(/^UNCLOUD-POWEROFF/m);
  });
});

describe('logs and forget', () => {
  it('logs outlive the VM and grow across starts; a failed start changes nothing remembered; forget drops identity and logs', async () => {
    await detach('lg1');
    await booted('lg1', 1);
    const refused = await run(['forget', 'lg1']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^uncloud-vm: VM lg1 is running; stop it first/);

    const follow = interactive(['logs', 'lg1', '-f']);
    await waitFor('history printed', () => /UNCLOUD-READY/.test(follow.out()));
    await run(['stop', 'lg1']);
    await waitFor('the power-off followed', () => /UNCLOUD-POWEROFF/.test(follow.out()), 20_000);
    follow.child.kill('SIGTERM');
    expect(await follow.done).toBe(0);

    const first = await status('lg1');
    expect(first.state).toBe('stopped');
    await detach('lg1');
    await booted('lg1', 2);
    await run(['stop', 'lg1']);
    const logs = await run(['logs', 'lg1']);
    expect(logs.stdout.match(/^-- uncloud-vm: VM lg1 \(\S+\) starting at \S+ --$/gm)).toHaveLength(2);
    expect(logs.stdout.match(/^UNCLOUD-POWEROFF/gm)).toHaveLength(2);

    // A start that fails (detached): qemu's whole stderr; the remembered MACs stay; no new VM appears.
    const bad = await run(['start', '--name', 'lg1', '--detach', '--machine', 'nosuchmachine', '--nic', 'bridge=br0,mac=42:00:00:00:00:99', ...guestArgs()]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/qemu failed to start \(exit code 1\); qemu said:\n {2}qemu-system-x86_64: unsupported machine type\n {2}Use -machine help to list supported machines/);
    expect(bad.stdout).toBe('');
    const never = await run(['start', '--name', 'never', '--detach', '--machine', 'nosuchmachine', ...guestArgs()]);
    expect(never.code).toBe(1);
    const vms = JSON.parse((await run(['list', '--json'])).stdout) as { name: string; state: string; nics: { mac: string }[] }[];
    expect(vms.map((v) => [v.name, v.state, v.nics.map((n) => n.mac)])).toEqual([['lg1', 'stopped', first.nics.map((n: { mac: string }) => n.mac)]]);
    expect((await run(['logs', 'lg1', '--qemu'])).stdout).toMatch(/unsupported machine type/);

    const forget = await run(['forget', 'lg1']);
    expect(forget.code, forget.stderr).toBe(0);
    expect(forget.stderr).toMatch(new RegExp(`forgot VM lg1: UUID ${first.uuid} and MACs ${first.nics[0].mac}; logs`));
    expect(JSON.parse((await run(['list', '--json'])).stdout)).toEqual([]);
    expect(existsSync(serialLogOf(e.sb, 'lg1'))).toBe(false);
    expect((await run(['logs', 'lg1'])).stderr).toMatch(/^uncloud-vm: VM lg1 has no logs/);
    expect((await run(['rm', 'lg1'])).stderr).toMatch(/^uncloud-vm: no VM named lg1 is known/);
  });
});
