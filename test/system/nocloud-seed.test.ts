/** The user's --cloud-init files: made absolute for units, read up front, a missing one a usage error naming it. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { absoluteCloudInit, readCloudInit } from '../../src/system/nocloud-seed.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest();

describe('absoluteCloudInit', () => {
  it('resolves every file against the working directory; dhcp and none stay words', () => {
    expect(absoluteCloudInit({ sshKeys: 'k.pub', userData: '/abs/ud.yaml', network: { file: 'net.yaml' } })).toEqual({
      sshKeys: join(process.cwd(), 'k.pub'),
      userData: '/abs/ud.yaml',
      network: { file: join(process.cwd(), 'net.yaml') },
    });
    expect(absoluteCloudInit({ network: 'none' })).toEqual({ network: 'none' });
  });
});

describe('readCloudInit', () => {
  it('reads the keys, the user-data and the network config', () => {
    writeFileSync(join(tmp.path, 'k.pub'), '# mine\nssh-ed25519 AAAAC3Nza a@b\n\n');
    writeFileSync(join(tmp.path, 'ud'), '#cloud-config\n');
    writeFileSync(join(tmp.path, 'net'), 'version: 2\n');
    expect(readCloudInit({ sshKeys: join(tmp.path, 'k.pub'), userData: join(tmp.path, 'ud'), network: { file: join(tmp.path, 'net') } })).toEqual({
      sshKeys: ['ssh-ed25519 AAAAC3Nza a@b'],
      userData: '#cloud-config\n',
      network: { text: 'version: 2\n' },
    });
    expect(readCloudInit({ network: 'dhcp' })).toEqual({ sshKeys: [], network: 'dhcp' });
  });

  it.each([
    [{ sshKeys: '/nonexistent/id.pub', network: 'dhcp' as const }, '--cloud-init ssh-keys=/nonexistent/id.pub: no such file'],
    [{ userData: '/nonexistent/ud', network: 'dhcp' as const }, '--cloud-init user-data=/nonexistent/ud: no such file'],
    [{ network: { file: '/nonexistent/net' } }, '--cloud-init network=/nonexistent/net: no such file'],
  ])('%j: a usage error naming the file', (req, message) => {
    expect(() => readCloudInit(req)).toThrow(expect.objectContaining({ exitCode: 2, message }));
  });
});
