/**
 * First-boot configuration: `--cloud-init` as typed → a CloudInitRequest, and the NoCloud seed's files
 * (meta-data, user-data, network-config) as text. Pure: reading the key and user-data files and writing
 * the image are system/nocloud-seed.ts's.
 *
 *   --cloud-init on
 *   --cloud-init ssh-keys=<file>[,user-data=<file>][,network=dhcp|none|<file>]
 */
import { printable, usageError } from './errors.js';
import { CONTROL_RE, qemuOptValue as esc, splitOptionList } from './quote.js';

export interface CloudInitRequest {
  /** An authorized_keys-style file: its keys go to the default user. */
  sshKeys?: string;
  /** Given to the guest verbatim. */
  userData?: string;
  /** dhcp (default): DHCP on every NIC, matched on its leased MAC; none: no network-config; else a file. */
  network: 'dhcp' | 'none' | { file: string };
}

const SYNTAX = 'on, or ssh-keys=<file>[,user-data=<file>][,network=dhcp|none|<file>]';

export function parseCloudInit(text: string): CloudInitRequest {
  const bad = (why: string) => usageError(`invalid --cloud-init '${printable(text)}': ${why}`);
  const req: CloudInitRequest = { network: 'dhcp' };
  if (text === 'on') return req;
  for (const part of splitOptionList(text)) {
    const eq = part.indexOf('=');
    if (eq < 0) throw bad(`expected ${SYNTAX}`);
    const key = part.slice(0, eq);
    const value = part.slice(eq + 1);
    if (value === '' || CONTROL_RE.test(value)) throw bad(`${printable(key)}= needs a value free of control characters`);
    if (key === 'ssh-keys') req.sshKeys = value;
    else if (key === 'user-data') req.userData = value;
    else if (key === 'network') req.network = value === 'dhcp' || value === 'none' ? value : { file: value };
    else throw bad(`unknown key '${printable(key)}'; allowed: ssh-keys, user-data, network`);
  }
  return req;
}

/** The option text that parses back to this request. */
export function formatCloudInit(req: CloudInitRequest): string {
  const parts: string[] = [];
  if (req.sshKeys !== undefined) parts.push(`ssh-keys=${esc(req.sshKeys)}`);
  if (req.userData !== undefined) parts.push(`user-data=${esc(req.userData)}`);
  if (req.network !== 'dhcp') parts.push(`network=${typeof req.network === 'string' ? req.network : esc(req.network.file)}`);
  return parts.length > 0 ? parts.join(',') : 'on';
}

/** The public keys of an authorized_keys-style text: one per non-empty line that is not a comment. */
export function parseAuthorizedKeys(text: string, file: string): string[] {
  const keys = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (keys.length === 0) throw usageError(`--cloud-init ssh-keys=${printable(file)}: the file holds no public key`);
  const bad = keys.find((k) => CONTROL_RE.test(k));
  if (bad !== undefined) throw usageError(`--cloud-init ssh-keys=${printable(file)}: a line holds control characters`);
  return keys;
}

export interface SeedInput {
  uuid: string;
  name: string;
  sshKeys: string[];
  /** The user's user-data text; without it a minimal #cloud-config. */
  userData?: string;
  /** The leased MAC of each NIC, in NIC order (for network=dhcp). */
  macs: string[];
  network: 'dhcp' | 'none' | { text: string };
}

export interface SeedFiles {
  'meta-data': string;
  'user-data': string;
  'network-config'?: string;
}

/** YAML scalars as JSON strings: JSON is YAML, and every character is escaped the same way by both. */
const y = (text: string): string => JSON.stringify(text);

export function seedFiles(input: SeedInput): SeedFiles {
  const meta = [`instance-id: ${y(input.uuid)}`, `local-hostname: ${y(input.name)}`];
  if (input.sshKeys.length > 0) meta.push('public-keys:', ...input.sshKeys.map((k) => `  - ${y(k)}`));
  const files: SeedFiles = {
    'meta-data': `${meta.join('\n')}\n`,
    'user-data': input.userData ?? '#cloud-config\n{}\n',
  };
  if (input.network === 'dhcp') {
    const nics = input.macs.flatMap((mac, i) => [`  nic${i}:`, '    match:', `      macaddress: ${y(mac)}`, '    dhcp4: true']);
    files['network-config'] = ['version: 2', 'ethernets:', ...nics, ''].join('\n');
  } else if (input.network !== 'none') {
    files['network-config'] = input.network.text;
  }
  return files;
}
