/**
 * Wrong and hostile input through the real CLI: each is refused with one line on stderr naming the problem,
 * a non-zero exit code, and a state dir and run dir byte-identical to before.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, FAKE_QEMU, sandbox, type Sandbox } from '../helpers/cli.js';
import { snapshot } from '../helpers/state.js';

let sb: Sandbox;
beforeAll(async () => {
  sb = sandbox({ UNCLOUD_VM_QEMU: FAKE_QEMU });
  // Some state to keep intact: a held MAC, a pool file, a run dir.
  expect((await cli(['mac', 'allocate', '--vm', 'keep'], { env: sb.env })).code).toBe(0);
  mkdirSync(sb.runDir, { recursive: true, mode: 0o700 });
  const dir = join(sb.stateDir, '..');
  writeFileSync(join(dir, 'bad.json'), '{"prefix": ');
  writeFileSync(join(dir, 'unknown-key.json'), '{"prefixx": "42:00:00"}');
  writeFileSync(join(dir, 'wrong-type.json'), '{"forcePrefix": "yes"}');
  writeFileSync(join(dir, 'd.img'), '');
  writeFileSync(join(dir, 'raw.img'), Buffer.alloc(4096));
  writeFileSync(join(dir, 'no-keys.pub'), '# no key here\n\n');
});
afterAll(() => sb.cleanup());

const S = ['start', '--accel', 'tcg'];
const cases: [string, string[], RegExp, number?][] = [
  // names
  ['name with /', [...S, '--name', 'a/b'], /invalid VM name 'a\/b'/],
  ['name ..', [...S, '--name', '..'], /invalid VM name '\.\.'/],
  ['name with space', [...S, '--name', 'a b'], /invalid VM name 'a b'/],
  ['name with newline', [...S, '--name', 'a\nb'], /invalid VM name 'a\\nb'/],
  ['name with quote', [...S, '--name', "a'b"], /invalid VM name 'a'b'/],
  ['name with $()', [...S, '--name', '$(reboot)'], /invalid VM name '\$\(reboot\)'/],
  ['name with backticks', [...S, '--name', '`id`'], /invalid VM name/],
  ['unicode name', [...S, '--name', 'wëb'], /invalid VM name 'wëb'/],
  ['200-char name', [...S, '--name', 'a'.repeat(200)], /invalid VM name 'a{77}\.\.\.'/],
  ['empty name', [...S, '--name', ''], /invalid VM name ''/],
  ['unit name with space', ['unit', 'a b'], /invalid VM name 'a b'/],
  ['stop target with ..', ['stop', '../x'], /invalid VM '\.\.\/x': expected a VM name or UUID/],
  // the operator's verbs
  ...['console', 'reboot', 'reset', 'pause', 'resume', 'logs'].map((v): [string, string[], RegExp] => [`${v} target with ..`, [v, '../x'], /invalid VM '\.\.\/x': expected a VM name or UUID/]),
  ...['console', 'reboot', 'reset', 'pause', 'resume'].map((v): [string, string[], RegExp, number] => [`${v} of a VM not running`, [v, 'ghost'], /VM ghost is not running/, 1]),
  ['reboot timeout in words', ['reboot', 'ghost', '--timeout', 'soon'], /invalid --timeout 'soon': expected whole seconds/],
  ['logs of an unknown VM', ['logs', 'ghost'], /VM ghost has no logs \(none in .*logs\/ghost\)/, 1],
  ['logs of an unknown UUID', ['logs', '0f0e0d0c-0b0a-4908-8706-050403020100'], /VM 0f0e0d0c-0b0a-4908-8706-050403020100 has no logs/, 1],
  ['forget an unknown VM', ['forget', 'ghost'], /no VM named ghost is known/, 1],
  ['rm with a bad name', ['rm', '../x'], /invalid VM name '\.\.\/x'/],
  // MACs
  ['multicast MAC', [...S, '--nic', 'bridge=br0,mac=01:00:5e:00:00:01'], /multicast/],
  ['broadcast MAC', [...S, '--nic', 'mac=ff:ff:ff:ff:ff:ff'], /multicast/],
  ['all-zero MAC', [...S, '--nic', 'mac=00:00:00:00:00:00'], /all-zero address is not usable/],
  ['short MAC', [...S, '--nic', 'mac=42:00:00:00:00'], /invalid MAC address '42:00:00:00:00'/],
  ['non-hex MAC', [...S, '--nic', 'mac=zz:00:00:00:00:00'], /invalid MAC address 'zz:00:00:00:00:00'/],
  ['MAC outside the pool', [...S, '--nic', 'mac=42:11:00:00:00:01'], /mac=42:11:00:00:00:01 is outside the pool 42:00:00/],
  ['QEMU-range MAC outside the pool', [...S, '--nic', 'mac=52:54:00:12:34:56'], /outside the pool 42:00:00/],
  ['release malformed', ['mac', 'release', 'zz'], /invalid MAC address 'zz'/],
  ['release too long', ['mac', 'release', '42:00:00:00:00:01:02'], /invalid MAC address/],
  ['release not held', ['mac', 'release', '42:00:00:00:99:99'], /MAC 42:00:00:00:99:99 is not held/, 1],
  // prefixes
  ['prefix too long', ['--prefix', '42:00:00:00:00:00', 'mac', 'allocate'], /expected 1 to 5 hex octets/],
  ['multicast prefix', ['--prefix', '43:00:00', 'mac', 'allocate'], /first octet is multicast/],
  // Crash-path defect 13: these scanned 2^40 addresses (or said "exhausted") and left pool.lock behind.
  ['forced multicast prefix 03', ['--prefix', '03', '--force-prefix', 'mac', 'allocate'], /'03': first octet is multicast.*even with --force-prefix/],
  ['forced multicast prefix 03:00:00', ['--prefix', '03:00:00', '--force-prefix', 'mac', 'allocate'], /first octet is multicast/],
  ['forced multicast prefix, dry run', ['--prefix', '03', '--force-prefix', ...S, '--dry-run'], /first octet is multicast/],
  ['globally administered prefix', ['--prefix', '40:00:00', 'mac', 'allocate'], /not locally administered/],
  ["QEMU's 52:54:00", ['--prefix', '52:54:00', 'mac', 'allocate'], /52:54:00 is QEMU's own default range/],
  ['tap range fe', ['--prefix', 'fe:00', 'mac', 'allocate'], /fe is reserved for the host side of taps/],
  ['prefix garbage', ['--prefix', 'xyz', 'mac', 'pool'], /invalid MAC prefix 'xyz'/],
  // memory and cores
  ['memory 0', [...S, '--memory', '0'], /invalid --memory 0: at least 16 MiB/],
  ['memory negative', [...S, '--memory=-5'], /invalid --memory '-5'/],
  ['memory 1e9', [...S, '--memory', '1e9'], /invalid --memory '1e9': expected MiB \(1024\) or a size with M or G \(2048M, 1G\)/],
  ['memory 1.5G', [...S, '--memory', '1.5G'], /invalid --memory '1\.5G'/],
  ['memory 1T', [...S, '--memory', '1T'], /invalid --memory '1T'/],
  ['memory abc', [...S, '--memory', 'abc'], /invalid --memory 'abc'/],
  ['memory beyond the host', [...S, '--memory', '99999999'], /invalid --memory 99999999: this host has \d+ MiB/],
  ['cores 0', [...S, '--cores', '0'], /invalid --cores '0': expected a whole number from 1 to 1024/],
  ['cores beyond what qemu takes', [...S, '--cores', '5000'], /invalid --cores '5000': expected a whole number from 1 to 1024/],
  ['cores two', [...S, '--cores', 'two'], /invalid --cores 'two'/],
  // bridges
  ['bridge name too long', [...S, '--nic', 'bridge=abcdefghijklmnop'], /invalid bridge name 'abcdefghijklmnop': use 1 to 15/],
  ['bridge name with ;', [...S, '--nic', 'bridge=br0;reboot'], /invalid bridge name 'br0;reboot'/],
  ['missing bridge', [...S, '--nic', 'bridge=nobr0'], /bridge nobr0 does not exist/, 1],
  ['unknown NIC key', [...S, '--nic', 'bridge=br0,model=e1000'], /unknown key 'model'; allowed: bridge, network, mac, filter/],
  ['ip4 with host bits', [...S, '--nic', 'br0,ip4=10.0.0.5/24'], /invalid --nic ip4 '10\.0\.0\.5\/24': host bits are set; give the network 10\.0\.0\.0\/24 or the address 10\.0\.0\.5/],
  ['ip6 not an address', [...S, '--nic', 'br0,ip6=2001:db8::/64;nft'], /invalid --nic ip6 '2001:db8::\/64;nft': the prefix length must be 0 to 128/],
  ['ip4 given an IPv6 address', [...S, '--nic', 'br0,ip4=2001:db8::1'], /invalid --nic ip4 '2001:db8::1': expected an IPv4 address or prefix/],
  ['guard keys with the guard off', [...S, '--nic', 'br0,filter=off,ip6any=on'], /ip4, ip6 and ip6any configure the guard, which filter=off turns off/],
  // paths
  ['missing cdrom', [...S, '--cdrom', '/nonexistent/alpine.iso'], /--cdrom \/nonexistent\/alpine\.iso: no such file/],
  ['missing disk', [...S, '--disk', '/nonexistent/d.qcow2'], /--disk \/nonexistent\/d\.qcow2: no such file/],
  ['disk format vmdk', [...S, '--disk', '@/d.img,format=vmdk'], /invalid --disk '.*d\.img,format=vmdk': format is raw or qcow2/],
  ['disk unknown key', [...S, '--disk', '@/d.img,if=ide'], /unknown key 'if'; allowed: format, readonly, cache, or new=, size, backing/],
  ['new disk without size', [...S, '--disk', 'new=@/n.qcow2'], /new= needs size=<n>G/],
  ['new disk with a bad size', [...S, '--disk', 'new=@/n.qcow2,size=lots'], /invalid disk size 'lots': expected a size such as 10G/],
  ['new disk on a missing base', [...S, '--disk', 'new=@/n.qcow2,backing=/nonexistent/base.qcow2'], /--disk backing=\/nonexistent\/base\.qcow2: no such file/],
  ['new disk where a raw file is', [...S, '--disk', 'new=@/raw.img,size=1G'], /--disk new=.*raw\.img: the file exists and is raw, not qcow2/],
  ['new disk, then a missing bridge: the disk is removed again', [...S, '--disk', 'new=@/made.qcow2,size=1G', '--nic', 'bridge=nobr0'], /bridge nobr0 does not exist/, 1],
  ['cloud-init key file missing', [...S, '--cloud-init', 'ssh-keys=/nonexistent/id.pub'], /--cloud-init ssh-keys=\/nonexistent\/id\.pub: no such file/],
  ['cloud-init key file without a key', [...S, '--cloud-init', 'ssh-keys=@/no-keys.pub'], /the file holds no public key/],
  ['cloud-init unknown key', [...S, '--cloud-init', 'password=secret'], /unknown key 'password'; allowed: ssh-keys, user-data, network/],
  ['cpu host under tcg', [...S, '--cpu', 'host'], /--cpu host needs KVM \(the accelerator is tcg\); use --cpu max under tcg/],
  ['cpu with a shell word', [...S, '--cpu', 'max;reboot'], /invalid --cpu 'max;reboot'/],
  ['completion for zsh', ['completion', 'zsh'], /no completion for 'zsh': only bash is supported/],
  ['missing kernel', [...S, '--kernel', '/nonexistent/vmlinuz'], /--kernel \/nonexistent\/vmlinuz: no such file/],
  ['missing qemu', [...S, '--qemu', '/nonexistent/qemu'], /qemu binary '\/nonexistent\/qemu' not found/, 1],
  ['missing config', ['--config', '/nonexistent/config.json', 'mac', 'pool'], /config file \/nonexistent\/config\.json does not exist/],
  // files
  ['damaged config', ['--config', '@/bad.json', 'mac', 'pool'], /config file .*bad\.json is not valid JSON/],
  ['config with unknown key', ['--config', '@/unknown-key.json', 'mac', 'pool'], /unknown key 'prefixx'; allowed: stateDir/],
  ['config with wrong type', ['--config', '@/wrong-type.json', 'mac', 'pool'], /'forcePrefix' must be a boolean/],
  // other values
  ['bad uuid', [...S, '--uuid', 'not-a-uuid'], /invalid --uuid 'not-a-uuid'/],
  ['bad accel', [...S, '--accel', 'hvf'], /argument 'hvf' is invalid\. Allowed choices are auto, kvm, tcg/],
  ['bad machine', [...S, '--machine', 'pc,accel=kvm'], /invalid --machine 'pc,accel=kvm'/],
  ['append with newline', [...S, '--kernel', '/bin/sh', '--append', 'a\nb'], /invalid --append 'a\\nb': must be non-empty and free of control characters/],
  ['bad stop timeout', [...S, '--stop-timeout=-1'], /invalid --stop-timeout '-1': expected whole seconds/],
  ['bad store', ['--store', 'sqlite://x', 'mac', 'pool'], /invalid store 'sqlite:\/\/x'/],
  ['console with detach', [...S, '--console', '--detach'], /--console and --detach exclude each other/],
  ['json without dry-run', [...S, '--json'], /--json goes with --dry-run/],
  // networks
  ['network id 0', [...S, '--nic', 'network=0'], /invalid network id '0': expected a whole number from 1 to 16777215/],
  ['network and bridge', [...S, '--nic', 'network=4,bridge=br0'], /give one of bridge= or network=, once/],
  ['network without underlay', [...S, '--nic', 'network=42'], /network 42 floods to multicast group ff05::2a, which needs the underlay device: set vxlanDev/],
  ['network rm hex id', ['network', 'rm', '0x2a'], /invalid network id '0x2a'/],
  ['network show too big', ['network', 'show', '16777216'], /invalid network id '16777216'/],
  // flags
  ['unknown flag', [...S, '--frobnicate'], /unknown option '--frobnicate'/],
  ['unknown mac flag', ['mac', 'allocate', '--count', '3'], /unknown option '--count'/],
  ['unknown command', ['destroy'], /unknown command 'destroy'/],
  ['misspelt command: one line with the suggestion', ['strat'], /^uncloud-vm: unknown command 'strat'; did you mean start\? \(see --help\)$/],
  ['misspelt option: one line with the suggestion', [...S, '--memroy', '1G'], /^uncloud-vm: unknown option '--memroy'; did you mean --memory\? \(see --help\)$/],
  ['missing argument', ['stop'], /missing required argument 'vm'/],
  ['extra argument', ['gc', 'now'], /too many arguments/],
];

describe(`${cases.length} bad inputs through the CLI`, () => {

  it.each(cases)('%s', async (_label, args, re, code = 2) => {
    const dir = join(sb.stateDir, '..');
    const argv = args.map((a) => a.replace(/^([a-z-]+=)?@\//, (_m, key: string | undefined) => `${key ?? ''}${dir}/`));
    const before = snapshot(dir);
    const r = await cli(argv, { env: sb.env });
    expect(r.code, r.stderr).toBe(code);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^uncloud-vm: /);
    expect(lines[0]).toMatch(re);
    expect(r.stdout).toBe('');
    expect(snapshot(dir)).toEqual(before);
  });
});

describe('damaged and foreign state', () => {
  it.each([
    ['pool.json', '{"version":1,"cursors":', ['mac', 'allocate'], /pool\.json is damaged \(not valid JSON\)/],
    ['pool.json', '{"version":2,"cursors":{}}', ['mac', 'allocate'], /pool\.json has version 2; this uncloud-vm reads version 1/],
    ['vms/web1.json', '{"version":1,"name":"web1"}', ['status', 'web1'], /VM record .*web1\.json is damaged \(bad name or uuid\)/],
  ])('%s = %j: %j fails clearly and changes nothing', async (file, text, args, re) => {
    const own = sandbox();
    try {
      await cli(['mac', 'allocate'], { env: own.env });
      mkdirSync(join(own.stateDir, 'vms'), { recursive: true, mode: 0o700 });
      writeFileSync(join(own.stateDir, file), text, { mode: 0o600 });
      const before = snapshot(own.stateDir);
      const r = await cli(args, { env: own.env });
      expect(r.code).toBe(1);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(re);
      expect(snapshot(own.stateDir)).toEqual(before);
    } finally {
      own.cleanup();
    }
  });
});

describe('a damaged lease among others is reported, never deleted, and stops nothing', () => {
  it.each([
    ['{"version":9}', /lease .*420000000001\.json has version 9/],
    ['garbage', /lease .*420000000001\.json is damaged \(not valid JSON\)/],
    ['', /lease .*420000000001\.json is damaged \(not valid JSON\)/],
  ])('lease file %j', async (text, re) => {
    const own = sandbox();
    try {
      for (let i = 0; i < 3; i++) await cli(['mac', 'allocate', '--vm', `m${i}`], { env: own.env });
      const damagedPath = join(own.stateDir, 'leases', '420000000001.json');
      writeFileSync(damagedPath, text, { mode: 0o600 });
      const before = snapshot(own.stateDir);
      const list = await cli(['mac', 'list', '--json'], { env: own.env });
      expect(list.code, list.stderr).toBe(0);
      expect(list.stderr).toMatch(re);
      const rows = JSON.parse(list.stdout) as { mac?: string; state: string }[];
      expect(rows.map((r) => r.state)).toEqual(['held', 'held', 'damaged']);
      const vms = await cli(['list'], { env: own.env });
      expect(vms.code, vms.stderr).toBe(0);
      expect(vms.stderr).toMatch(re);
      expect(snapshot(own.stateDir)).toEqual(before);
      // gc goes on past it, says so, and leaves it in place
      const gc = await cli(['gc'], { env: own.env });
      expect(gc.code).toBe(1);
      expect(gc.stderr).toMatch(/damaged record left untouched/);
      expect(readFileSync(damagedPath, 'utf8')).toBe(text);
      // the operator repairs it by releasing that MAC
      expect((await cli(['mac', 'release', '42:00:00:00:00:01'], { env: own.env })).code).toBe(0);
      expect(existsSync(damagedPath)).toBe(false);
    } finally {
      own.cleanup();
    }
  });
});
