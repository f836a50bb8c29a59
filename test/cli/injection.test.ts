/**
 * Injection-proof rendering: hostile values reach qemu, the tap scripts and systemd exactly as given, and
 * nothing in them runs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { shellQuote } from '../../src/core/quote.js';
import { loadTemplate, render } from '../../src/system/templates.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';

const fake = fakeQemuEnvironment();
// Made as the file loads: the hostile values name a file in it, and the test names are made of them.
const dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-inject-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const pwned = () => join(dir, 'pwned');
const hostile = (): string[] => [
  `$(touch ${pwned()})`,
  `\`touch ${pwned()}\``,
  `'; touch ${pwned()}; '`,
  `" && touch ${pwned()} && "`,
  'a,readonly=off',
  '100% $HOME \\x',
];

describe('qemu argv through exec.sh', () => {
  it('hostile paths and kernel command lines reach qemu verbatim', async () => {
    const HOSTILE = hostile();
    const log = join(dir, 'argv.log');
    const disk = join(dir, "we ird'$(id)`id`\" %x $HOME,readonly=off.img");
    writeFileSync(disk, '');
    const args = ['start', '--name', 'inj', '--accel', 'tcg', '--memory', '64', '--disk', disk.replaceAll(',', ',,'), '--kernel', disk, '--append', HOSTILE.join(' ')];
    const dry = await fake.run([...args, '--dry-run', '--json'], { FAKE_QEMU_LOG: log });
    expect(dry.code, dry.stderr).toBe(0);
    const want: string[] = JSON.parse(dry.stdout).argv.slice(1);
    const r = await fake.run(args, { FAKE_QEMU_LOG: log });
    expect(r.code, r.stderr).toBe(0);
    const got = readFileSync(log, 'utf8').split('\n').slice(0, -1);
    // The MAC is tentative in the dry run and leased in the real run: the same first address.
    expect(got).toEqual(want);
    expect(got).toContain(HOSTILE.join(' '));
    expect(got).toContain(`file=${disk.replaceAll(',', ',,')},if=virtio,format=raw`);
    expect(existsSync(pwned())).toBe(false);
  });
});

describe('tap scripts', () => {
  /** Stubs for `ip` and `nft` that log each argument on a line (and nft its batch from stdin) instead of acting. */
  const stubs = (): { bin: string; ipLog: string; nftLog: string } => {
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    const ipLog = join(dir, 'ip.log');
    const nftLog = join(dir, 'nft.log');
    rmSync(ipLog, { force: true });
    rmSync(nftLog, { force: true });
    writeFileSync(join(bin, 'ip'), `#!/bin/sh\nprintf '%s\\n' "$@" >> ${shellQuote(ipLog)}\n`, { mode: 0o755 });
    writeFileSync(join(bin, 'nft'), `#!/bin/sh\nprintf '%s\\n' "$@" >> ${shellQuote(nftLog)}\ncat >> ${shellQuote(nftLog)}\n`, { mode: 0o755 });
    return { bin, ipLog, nftLog };
  };
  const logged = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : '');
  /** What the ip stub logs for these calls: each argument on a line of its own. */
  const argLines = (...calls: string[][]) => calls.flat().map((a) => `${a}\n`).join('');
  /** Where the scripts mark the tap's guard: a hostile path too. */
  const mark = (evil: string) => join(dir, 'marks', evil, 'tap0');
  const script = (name: string, evil: string, bridge: string) => {
    const path = join(dir, name);
    const text = render(
      loadTemplate(name),
      { vm: evil, index: '0', iface: 'tap0', bridge, tapMac: evil, filter: 'on', guard: evil, unguard: evil, guardMark: mark(evil) },
      shellQuote,
      { afterDown: ':' },
    );
    writeFileSync(path, text, { mode: 0o700 });
    return path;
  };
  /** Run a script as qemu does (tap name as $1), inside the test's namespace, where br0 is a bridge. */
  const runScript = (path: string, bin: string) =>
    spawnSync('/usr/sbin/ip', ['netns', 'exec', fake.ns.name, 'sh', path, 'tap0'], { env: { PATH: `${bin}:/usr/bin:/bin` }, encoding: 'utf8' });

  /** Each hostile value, named with its file as PWNED (the names stay the same from run to run). */
  const values = () => hostile().map((v) => [v.replaceAll(pwned(), 'PWNED'), v]);

  it.each(values())('ifup: a hostile bridge name %s is looked for as it is, and nothing else runs', (_label, evil) => {
    const { bin, ipLog, nftLog } = stubs();
    const r = runScript(script('ifup.sh', evil, evil), bin);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`bridge ${evil} does not exist`);
    // Refused before any tool ran.
    expect([logged(ipLog), logged(nftLog)]).toEqual(['', '']);
    expect(existsSync(pwned())).toBe(false);
  });

  it.each(values())('ifup: a hostile MAC and guard batch %s reach ip and nft as one literal word each', (_label, evil) => {
    const { bin, ipLog, nftLog } = stubs();
    const r = runScript(script('ifup.sh', evil, 'br0'), bin);
    expect(r.status, r.stderr).toBe(0);
    expect(logged(ipLog)).toBe(argLines(['link', 'set', 'dev', 'tap0', 'address', evil], ['link', 'set', 'dev', 'tap0', 'master', 'br0'], ['link', 'set', 'dev', 'tap0', 'up']));
    // nft read the batch from stdin, byte for byte; the unguard batch was never run (the tap came up).
    expect(logged(nftLog)).toBe(`-f\n-\n${evil}`);
    // The guard was marked, at the path as given.
    expect(existsSync(mark(evil))).toBe(true);
    expect(existsSync(pwned())).toBe(false);
  });

  it.each(values())('ifdown: a hostile unguard batch %s reaches nft as it is, and the mark goes once nft took it', (_label, evil) => {
    const { bin, ipLog, nftLog } = stubs();
    mkdirSync(dirname(mark(evil)), { recursive: true });
    writeFileSync(mark(evil), '');
    const r = runScript(script('ifdown.sh', evil, evil), bin);
    expect(r.status, r.stderr).toBe(0);
    expect(logged(ipLog)).toBe(argLines(['link', 'set', 'dev', 'tap0', 'down'], ['link', 'set', 'dev', 'tap0', 'nomaster'], ['link', 'delete', 'dev', 'tap0']));
    expect(logged(nftLog)).toBe(`-f\n-\n${evil}`);
    expect(existsSync(mark(evil))).toBe(false);
    expect(existsSync(pwned())).toBe(false);
  });
});
