/**
 * The NoCloud seed of `--cloud-init`: the user's files read up front (so a bad one fails before anything is
 * leased), then an ISO 9660 image labelled "cidata" made with genisoimage once the MACs are known.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { printable, UncloudError } from '../core/errors.js';
import { type CloudInitRequest, parseAuthorizedKeys, type SeedFiles, type SeedInput } from '../core/nocloud.js';
import { findExecutable } from './host.js';

export const SEED_TOOL = 'genisoimage';

/** What the seed needs besides the VM's identity and MACs. */
export type SeedContent = Pick<SeedInput, 'sshKeys' | 'userData' | 'network'>;

function readUserFile(key: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UncloudError('NO_FILE', `--cloud-init ${key}=${printable(path)}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, 2);
  }
}

/** Absolute paths, so a unit's ExecStartPre reads the same files. */
export function absoluteCloudInit(req: CloudInitRequest): CloudInitRequest {
  const abs: CloudInitRequest = { network: typeof req.network === 'string' ? req.network : { file: resolve(req.network.file) } };
  if (req.sshKeys !== undefined) abs.sshKeys = resolve(req.sshKeys);
  if (req.userData !== undefined) abs.userData = resolve(req.userData);
  return abs;
}

export function readCloudInit(req: CloudInitRequest): SeedContent {
  const content: SeedContent = {
    sshKeys: req.sshKeys !== undefined ? parseAuthorizedKeys(readUserFile('ssh-keys', req.sshKeys), req.sshKeys) : [],
    network: typeof req.network === 'string' ? req.network : { text: readUserFile('network', req.network.file) },
  };
  if (req.userData !== undefined) content.userData = readUserFile('user-data', req.userData);
  return content;
}

export function seedToolMissing(): string | undefined {
  return findExecutable(SEED_TOOL) ? undefined : `${SEED_TOOL} not found; --cloud-init needs it (Debian: apt-get install genisoimage)`;
}

/** Write the seed image at `path` (replacing one left by an earlier start): mode 0600, label cidata. */
export function writeSeed(path: string, files: SeedFiles): void {
  const work = mkdtempSync(join(dirname(path), '.seed-'));
  try {
    const names = Object.keys(files) as (keyof SeedFiles)[];
    for (const name of names) writeFileSync(join(work, name), files[name]!, { mode: 0o600 });
    const r = spawnSync(SEED_TOOL, ['-quiet', '-output', path, '-volid', 'cidata', '-joliet', '-rock', ...names], { cwd: work, encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      const why = r.error ? r.error.message : (r.stderr || '').trim().replace(/\s*\n\s*/g, '; ');
      throw new UncloudError('SEED', `cannot build the cloud-init seed ${path}: ${why || `${SEED_TOOL} exited with ${r.status}`}`);
    }
    chmodSync(path, 0o600);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
