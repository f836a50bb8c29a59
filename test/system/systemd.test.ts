/** Where unit files go (system or user, XDG_CONFIG_HOME honoured) and what a VM's unit is called. */
import { describe, expect, it } from 'vitest';
import { unitDir, unitName } from '../../src/system/systemd.js';

describe('unitDir', () => {
  it.each([
    [false, { HOME: '/home/u' }, '/etc/systemd/system'],
    [true, { HOME: '/home/u' }, '/home/u/.config/systemd/user'],
    [true, { HOME: '/home/u', XDG_CONFIG_HOME: '/cfg' }, '/cfg/systemd/user'],
    [true, { HOME: '/home/u', XDG_CONFIG_HOME: '' }, '/home/u/.config/systemd/user'],
  ])('user=%s, env %j: %s', (user, env, want) => {
    expect(unitDir(user, env)).toBe(want);
  });
});

describe('unitName', () => {
  it('is the VM name inside uncloud-vm-….service', () => {
    expect(unitName('web1')).toBe('uncloud-vm-web1.service');
  });
});
