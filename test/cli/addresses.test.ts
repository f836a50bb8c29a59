/** Each NIC's IPv6 addresses and guard as the CLI shows them (status, list, mac list), with a fake qemu. */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { addressesByMac, addressesOfMac, addressLines } from '../../src/cli/addresses.js';
import { parseMac } from '../../src/core/mac.js';
import { type BridgeFacts, nicAddresses } from '../../src/core/nic-allowed.js';
import type { VmRecord } from '../../src/system/run-dir.js';
import { waitFor } from '../helpers/cli.js';
import { fakeQemuEnvironment } from '../helpers/fake-qemu.js';

const fake = fakeQemuEnvironment({ bridges: ['br0', 'br1'] });
beforeAll(() => {
  // br1 has a global /64 of its own: with nothing configured for it, that is the prefix shown.
  fake.ns.ip('-6', 'addr', 'add', '2001:db8:b1::1/64', 'dev', 'br1', 'nodad');
});
beforeEach(() => {
  const config = join(fake.sb.stateDir, '..', 'config.json');
  writeFileSync(config, JSON.stringify({ bridges: { br0: { prefixes: ['2001:db8:a::/64'], ipv6Only: true } } }));
  fake.sb.env.UNCLOUD_VM_CONFIG = config;
});
const { run } = fake;

describe('addresses shown', () => {
  it('status, list --json and mac list --json show link-local, EUI-64 and the guard of a running VM', async () => {
    let launcher: ChildProcess | undefined;
    const vm = run(
      ['start', '--name', 'addr1', '--accel', 'tcg', '--memory', '64', '--nic', 'br0,mac=42:00:00:00:0c:01', '--nic', 'br1,mac=42:00:00:00:0c:02,ip4=192.0.2.7'],
      { FAKE_QEMU_SLEEP: '60' },
      (c) => (launcher = c),
    );
    // Running, not just claimed: the record gets its NICs' addresses before qemu is started.
    const st = await waitFor('the VM running', async () => {
      const r = await run(['status', 'addr1', '--json']);
      const j = r.code === 0 ? JSON.parse(r.stdout) : undefined;
      return j?.state === 'running' ? j : undefined;
    });
    const nic0 = {
      linkLocal: 'fe80::4000:ff:fe00:c01',
      eui64: ['2001:db8:a:0:4000:ff:fe00:c01'],
      prefixSource: 'config',
      guard: 'on',
      allowed: { ipv6: ['::', '2001:db8:a:0:4000:ff:fe00:c01', 'fe80::4000:ff:fe00:c01'], ipv4: 'none' },
    };
    const nic1 = {
      linkLocal: 'fe80::4000:ff:fe00:c02',
      eui64: ['2001:db8:b1:0:4000:ff:fe00:c02'],
      prefixSource: 'bridge',
      guard: 'on',
      allowed: { ipv6: ['::', '2001:db8:b1:0:4000:ff:fe00:c02', 'fe80::4000:ff:fe00:c02'], ipv4: ['192.0.2.7'] },
    };
    expect(st.nics.map((n: { addresses: unknown }) => n.addresses)).toEqual([nic0, nic1]);

    const text = (await run(['status', 'addr1'])).stdout;
    expect(text).toMatch(/^ {2}link-local\s+fe80::4000:ff:fe00:c01$/m);
    expect(text).toMatch(/^ {2}EUI-64\s+2001:db8:a:0:4000:ff:fe00:c01 \(configured prefixes\)$/m);
    expect(text).toMatch(/^ {2}EUI-64\s+2001:db8:b1:0:4000:ff:fe00:c02 \(the bridge's own \/64s\)$/m);
    expect(text).toMatch(/^ {2}IPv4\s+dropped \(IPv6-only network\)$/m);
    expect(text).toMatch(/^ {2}IPv4\s+192\.0\.2\.7 only \(source and ARP sender\)$/m);

    const list = JSON.parse((await run(['list', '--json'])).stdout);
    expect(list[0].nics.map((n: { addresses: unknown }) => n.addresses)).toEqual([nic0, nic1]);
    const leases = JSON.parse((await run(['mac', 'list', '--json'])).stdout);
    expect(leases.map((l: { addresses: unknown }) => l.addresses)).toEqual([nic0, nic1]);

    const dry = JSON.parse((await run(['start', '--dry-run', '--json', '--nic', 'br0,mac=42:00:00:00:0c:01,ip6any=on'])).stdout);
    expect(dry.nics[0].addresses.allowed.ipv6).toEqual(['::', '2001:db8:a::/64', 'fe80::4000:ff:fe00:c01']);
    launcher!.kill('SIGTERM');
    expect((await vm).code).toBe(0);
  });

  it('a held MAC with no local VM shows its link-local address', async () => {
    const mac = (await run(['mac', 'allocate'])).stdout.trim();
    const leases = JSON.parse((await run(['mac', 'list', '--json'])).stdout);
    expect(leases).toMatchObject([{ mac, addresses: { linkLocal: 'fe80::4000:ff:fe00:1' } }]);
  });

  it.each([
    [{ bridges: { br0: { prefixes: ['2001:db8::/48'] } } }, /bridges\.br0\.prefixes '2001:db8::\/48': a network prefix must be a \/64/],
    [{ bridges: { br0: { prefixes: ['nope'] } } }, /expected an IPv6 address or prefix/],
    [{ bridges: { br0: { ipv6only: true } } }, /unknown key 'ipv6only'; allowed: prefixes, ipv6Only/],
  ])('a bad config %j is a one-line error, exit 2', async (config, re) => {
    writeFileSync(fake.sb.env.UNCLOUD_VM_CONFIG!, JSON.stringify(config));
    const r = await run(['start', '--dry-run']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('addressLines, addressesOfMac (the pure helpers status and list print with)', () => {
  const mac = parseMac('42:00:00:00:0c:01');
  const none: BridgeFacts = { prefixes: [], source: 'none', ipv6Only: false };
  const config: BridgeFacts = { prefixes: ['2001:db8:a::/64'], source: 'config', ipv6Only: true };

  it.each([
    ['guard on, configured prefix, IPv6-only', nicAddresses(mac, { filter: true, ip4: [], ip6: [], ip6Any: false }, config), [
      ['link-local', 'fe80::4000:ff:fe00:c01'],
      ['EUI-64', '2001:db8:a:0:4000:ff:fe00:c01 (configured prefixes)'],
      ['guard', 'on'],
      ['IPv6 from', '::, 2001:db8:a:0:4000:ff:fe00:c01, fe80::4000:ff:fe00:c01'],
      ['IPv4', 'dropped (IPv6-only network)'],
    ]],
    ['guard off, no prefix known', nicAddresses(mac, { filter: false, ip4: [], ip6: [], ip6Any: false }, none), [
      ['link-local', 'fe80::4000:ff:fe00:c01'],
      ['EUI-64', '- (no prefix known)'],
      ['guard', 'off (filter=off)'],
    ]],
  ])('%s', (_label, addresses, want) => {
    expect(addressLines(addresses)).toEqual(want);
  });

  it('a MAC with a local record gets all of it; another only its link-local address', () => {
    const a = nicAddresses(mac, { filter: true, ip4: [], ip6: [], ip6Any: false }, none);
    const known = addressesByMac([{ nics: [{ index: 0, mac: '42:00:00:00:0c:01', tap: 't', bridge: 'br0', addresses: a }] } as unknown as VmRecord]);
    expect(addressesOfMac('42:00:00:00:0c:01', known)).toBe(a);
    expect(addressesOfMac('42:00:00:00:0c:02', known)).toEqual({ linkLocal: 'fe80::4000:ff:fe00:c02' });
  });
});
