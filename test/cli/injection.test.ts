/**
 * Injection-proof rendering: hostile values reach qemu, the tap scripts and systemd exactly as given, and
 * nothing in them runs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shellQuote } from '../../src/core/quote.js';
import { loadTemplate, render } from '../../src/system/templates.js';
import { cli, FAKE_QEMU, sandbox, type Sandbox } from '../helpers/cli.js';
import { createNetns, type Netns } from '../helpers/netns.js';

let ns: Netns;
let sb: Sandbox;
let dir: string;
beforeAll(() => {
  ns = createNetns(['br0']);
  dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-inject-'));
});
afterAll(() => {
  ns.remove();
  sb?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

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
    sb = sandbox({ UNCLOUD_VM_QEMU: FAKE_QEMU, FAKE_QEMU_LOG: log });
    const disk = join(dir, "we ird'$(id)`id`\" %x $HOME,readonly=off.img");
    writeFileSync(disk, '');
    const args = ['start', '--name', 'inj', '--accel', 'tcg', '--memory', '64', '--disk', disk.replaceAll(',', ',,'), '--kernel', disk, '--append', HOSTILE.join(' ')];
    const dry = await cli([...args, '--dry-run', '--json'], { env: sb.env, netns: ns.name });
    expect(dry.code, dry.stderr).toBe(0);
    const want: string[] = JSON.parse(dry.stdout).argv.slice(1);
    const r = await cli(args, { env: sb.env, netns: ns.name });
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
  it('a hostile value rendered into ifup/ifdown stays one literal word', () => {
    for (const name of ['ifup.sh', 'ifdown.sh']) {
      for (const evil of hostile()) {
        const script = render(
          loadTemplate(name),
          { vm: evil, index: '0', iface: 'tap0', bridge: evil, tapMac: evil, filter: 'on', guard: evil, unguard: evil },
          shellQuote,
          { afterDown: ':' },
        );
        const path = join(dir, name);
        writeFileSync(path, script, { mode: 0o700 });
        // A stub `ip` and `nft` log what they are given instead of touching the network.
        const bin = join(dir, 'bin');
        spawnSync('mkdir', ['-p', bin]);
        for (const tool of ['ip', 'nft']) writeFileSync(join(bin, tool), `#!/bin/sh\nprintf '%s\\n' "$@" >> ${shellQuote(join(dir, `${tool}.log`))}\n`, { mode: 0o755 });
        const r = spawnSync('sh', [path, 'tap0'], { env: { PATH: `${bin}:/usr/bin:/bin` }, encoding: 'utf8' });
        if (name === 'ifup.sh') {
          expect(r.status).toBe(1);
          expect(r.stderr).toContain(`bridge ${evil} does not exist`);
        }
        expect(existsSync(pwned())).toBe(false);
      }
    }
  });
});
