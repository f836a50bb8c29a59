import { describe, expect, it } from 'vitest';
import { type CloudInitRequest, formatCloudInit, parseAuthorizedKeys, parseCloudInit, seedFiles } from '../../src/core/nocloud.js';

describe('parseCloudInit', () => {
  it.each<[string, CloudInitRequest]>([
    ['on', { network: 'dhcp' }],
    ['ssh-keys=/k/id.pub', { sshKeys: '/k/id.pub', network: 'dhcp' }],
    ['ssh-keys=k.pub,user-data=ud.yaml,network=none', { sshKeys: 'k.pub', userData: 'ud.yaml', network: 'none' }],
    ['network=/n/net.yaml', { network: { file: '/n/net.yaml' } }],
    ['user-data=/a,,b.yaml', { userData: '/a,b.yaml', network: 'dhcp' }],
  ])('%s', (text, want) => {
    expect(parseCloudInit(text)).toEqual(want);
    expect(parseCloudInit(formatCloudInit(want))).toEqual(want);
  });

  it.each<[string, RegExp]>([
    ['', /expected on, or ssh-keys=<file>/],
    ['yes', /invalid --cloud-init 'yes': expected on, or ssh-keys=<file>\[,user-data=<file>\]\[,network=dhcp\|none\|<file>\]/],
    ['password=x', /unknown key 'password'; allowed: ssh-keys, user-data, network/],
    ['ssh-keys=', /ssh-keys= needs a value/],
  ])('refuses %j', (text, re) => {
    expect(() => parseCloudInit(text)).toThrow(re);
  });
});

describe('parseAuthorizedKeys', () => {
  it('takes every key line, skips blanks and comments', () => {
    const text = '# mine\nssh-ed25519 AAAAC3 me@laptop\n\n  ecdsa-sha2-nistp256 AAAAE2 other  \n';
    expect(parseAuthorizedKeys(text, 'k.pub')).toEqual(['ssh-ed25519 AAAAC3 me@laptop', 'ecdsa-sha2-nistp256 AAAAE2 other']);
  });
  it('a file without a key is an error', () => {
    expect(() => parseAuthorizedKeys('# nothing\n\n', 'k.pub')).toThrow(/--cloud-init ssh-keys=k.pub: the file holds no public key/);
  });
});

describe('seedFiles', () => {
  const base = { uuid: '0f0e0d0c-0b0a-4908-8706-050403020100', name: 'web1', sshKeys: [], macs: ['42:00:00:00:00:01', '42:00:00:00:00:02'] };

  it('instance-id is the UUID, the hostname the name; DHCP on each NIC matched on its MAC', () => {
    expect(seedFiles({ ...base, network: 'dhcp' })).toEqual({
      'meta-data': 'instance-id: "0f0e0d0c-0b0a-4908-8706-050403020100"\nlocal-hostname: "web1"\n',
      'user-data': '#cloud-config\n{}\n',
      'network-config': [
        'version: 2',
        'ethernets:',
        '  nic0:',
        '    match:',
        '      macaddress: "42:00:00:00:00:01"',
        '    dhcp4: true',
        '  nic1:',
        '    match:',
        '      macaddress: "42:00:00:00:00:02"',
        '    dhcp4: true',
        '',
      ].join('\n'),
    });
  });

  it('keys in meta-data as quoted strings, user-data and network-config verbatim, or no network-config', () => {
    const keys = ['ssh-ed25519 AAAA me@x', 'ssh-rsa BBBB "quoted" \\ back'];
    const files = seedFiles({ ...base, sshKeys: keys, userData: '#cloud-config\npackages: [htop]\n', network: { text: 'version: 1\n' } });
    expect(files['meta-data']).toContain('public-keys:\n  - "ssh-ed25519 AAAA me@x"\n  - "ssh-rsa BBBB \\"quoted\\" \\\\ back"\n');
    expect(files['user-data']).toBe('#cloud-config\npackages: [htop]\n');
    expect(files['network-config']).toBe('version: 1\n');
    expect(seedFiles({ ...base, network: 'none' })['network-config']).toBeUndefined();
  });
});
