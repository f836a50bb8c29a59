import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultSettings, resolveSettings } from '../../src/system/config.js';

const dir = mkdtempSync(join(tmpdir(), 'uncloud-vm-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('defaultSettings', () => {
  it.each<[string, number, NodeJS.ProcessEnv, { stateDir: string; runDir: string }]>([
    ['root: FHS paths', 0, { HOME: '/root' }, { stateDir: '/var/lib/uncloud-vm', runDir: '/run/uncloud-vm' }],
    ['a user with XDG dirs', 1000, { HOME: '/home/u', XDG_STATE_HOME: '/x/state', XDG_RUNTIME_DIR: '/run/user/1000' }, { stateDir: '/x/state/uncloud-vm', runDir: '/run/user/1000/uncloud-vm' }],
    ['a user without XDG dirs', 1000, { HOME: '/home/u' }, { stateDir: '/home/u/.local/state/uncloud-vm', runDir: '/tmp/uncloud-vm-1000/uncloud-vm' }],
  ])('%s', (_l, uid, env, want) => {
    expect(defaultSettings(env, uid)).toMatchObject({ ...want, prefix: '42:00:00', bridge: 'br0', qemu: 'qemu-system-x86_64', store: 'file' });
  });
});

describe('resolveSettings: defaults < config file < environment < flags', () => {
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ prefix: '42:11', bridge: 'brcfg', qemu: '/opt/qemu' }));
  it.each<[string, Record<string, string>, Record<string, string>, Record<string, string>]>([
    ['config over defaults', {}, {}, { prefix: '42:11', bridge: 'brcfg', qemu: '/opt/qemu' }],
    ['environment over config', { UNCLOUD_VM_PREFIX: '42:22', UNCLOUD_VM_BRIDGE: 'brenv' }, {}, { prefix: '42:22', bridge: 'brenv', qemu: '/opt/qemu' }],
    ['flags over environment', { UNCLOUD_VM_PREFIX: '42:22' }, { prefix: '42:33' }, { prefix: '42:33', bridge: 'brcfg' }],
    [
      'VM network underlay from the environment',
      { UNCLOUD_VM_VXLAN_DEV: 'eth1', UNCLOUD_VM_VXLAN_LOCAL: 'fd00::1', UNCLOUD_VM_VXLAN_PEERS: 'fd00::2,fd00::3', UNCLOUD_VM_VXLAN_MTU: '1400' },
      {},
      { vxlanDev: 'eth1', vxlanLocal: 'fd00::1', vxlanPeers: 'fd00::2,fd00::3', vxlanMtu: '1400' },
    ],
  ])('%s', (_l, env, flags, want) => {
    expect(resolveSettings({ config, ...flags }, { HOME: dir, ...env })).toMatchObject(want);
  });

  it('UNCLOUD_VM_CONFIG names the file; a missing default config file is fine', () => {
    expect(resolveSettings({}, { HOME: dir, UNCLOUD_VM_CONFIG: config }).bridge).toBe('brcfg');
    expect(resolveSettings({}, { HOME: dir }).bridge).toBe('br0');
  });
});
