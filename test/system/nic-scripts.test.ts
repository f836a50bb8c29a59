/** A NIC's ifup/ifdown scripts: every value rendered in, the guard batches present exactly when the guard is on. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseMac } from '../../src/core/mac.js';
import { type BridgeFacts, nicAddresses } from '../../src/core/nic-allowed.js';
import { renderIfdown, renderIfup, type NicScriptInput } from '../../src/system/nic-scripts.js';

const none: BridgeFacts = { prefixes: [], source: 'none', ipv6Only: false };
const guardOn = { filter: true, ip4: [], ip6: [], ip6Any: false };
const nic = (filter: boolean): NicScriptInput => ({
  vm: 'web1',
  index: 1,
  iface: 'uc0123456789n1',
  bridge: 'br0',
  mac: '42:00:00:00:00:07',
  addresses: nicAddresses(parseMac('42:00:00:00:00:07'), { ...guardOn, filter }, none),
  guardMark: '/run/uncloud-vm/.guards/uc0123456789n1',
});

const sh = (script: string) => spawnSync('sh', ['-n', '-c', script], { encoding: 'utf8' });

describe('renderIfup / renderIfdown', () => {
  it('ifup: the NIC, the bridge, the tap-side MAC (fe:…) and the guard batch', () => {
    const up = renderIfup(nic(true));
    expect(up).toContain('VM web1, NIC 1.');
    expect(up.split('\n')).toEqual(expect.arrayContaining(['iface=uc0123456789n1', 'bridge=br0', 'filter=on']));
    expect(up).toContain('address fe:00:00:00:00:07');
    expect(up).toContain('add element bridge uncloud_vm guarded { "uc0123456789n1" }');
    // The mark is made before the guard goes in.
    expect(up.indexOf(": >\"$mark\"")).toBeGreaterThan(up.indexOf("mark=/run/uncloud-vm/.guards/uc0123456789n1"));
    expect(up.indexOf(": >\"$mark\"")).toBeLessThan(up.indexOf('nft -f -'));
    expect(sh(up).status).toBe(0);
  });

  it('filter=off: no guard batch at all', () => {
    const up = renderIfup(nic(false));
    expect(up.split('\n')).toContain('filter=off');
    expect(up).not.toContain('uncloud_vm');
    expect(sh(up).status).toBe(0);
  });

  it('ifdown: the unguard batch and the command to run after the NIC is down', () => {
    const down = renderIfdown(nic(true), "'uncloud-vm' 'hook' 'nic-down' 'web1'");
    expect(down).toContain('delete element bridge uncloud_vm guarded { "uc0123456789n1" }');
    expect(down).toContain('then rm -f /run/uncloud-vm/.guards/uc0123456789n1; fi');
    expect(down).toMatch(/^'uncloud-vm' 'hook' 'nic-down' 'web1'$/m);
    expect(renderIfdown(nic(true))).toMatch(/^:$/m);
    expect(sh(down).status).toBe(0);
  });
});
