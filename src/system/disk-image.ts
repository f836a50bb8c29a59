/**
 * Disk images through qemu-img: what format a file is (so qemu never guesses it and never warns), and the
 * qcow2 disks `--disk new=` asks for, optionally as overlays of a base image.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { DISK_FORMATS, type DiskFormat, type DiskRequest } from '../core/disk-spec.js';
import { printable, UncloudError } from '../core/errors.js';

export interface ImageInfo {
  format: string;
  virtualSize: number;
  /** The backing file as recorded in the image, resolved against the image's directory. */
  backing?: string;
}

function qemuImg(args: string[], what: string): string {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8' });
  if (r.error) {
    const missing = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new UncloudError('QEMU_IMG', missing ? 'qemu-img not found; install it (Debian: apt-get install qemu-utils)' : `cannot run qemu-img: ${r.error.message}`);
  }
  if (r.status !== 0) {
    const why = (r.stderr || r.stdout).trim().replace(/^qemu-img: /, '').replace(/\s*\n\s*/g, '; ');
    throw new UncloudError('QEMU_IMG', `${what}: ${why || `qemu-img exited with ${r.status}`}`);
  }
  return r.stdout;
}

/** `qemu-img info` with -U: an image a running VM holds open can still be read. */
export function inspectImage(path: string): ImageInfo {
  const out = qemuImg(['info', '-U', '--output=json', path], `cannot read disk image ${path}`);
  const data = JSON.parse(out) as { format: string; 'virtual-size': number; 'full-backing-filename'?: string; 'backing-filename'?: string };
  const info: ImageInfo = { format: data.format, virtualSize: data['virtual-size'] };
  const backing = data['full-backing-filename'] ?? data['backing-filename'];
  if (backing !== undefined) info.backing = resolve(path, '..', backing);
  return info;
}

/** The format of an existing image, if it is one uncloud-vm runs. */
export function detectFormat(path: string): DiskFormat {
  return runnableFormat(inspectImage(path), path, '--disk');
}

function runnableFormat(info: ImageInfo, path: string, flag: string): DiskFormat {
  if ((DISK_FORMATS as readonly string[]).includes(info.format)) return info.format as DiskFormat;
  throw new UncloudError(
    'DISK_FORMAT',
    `${flag} ${path} is a ${printable(info.format)} image; uncloud-vm runs raw and qcow2 disks (convert it: qemu-img convert -O qcow2 ${path} <new>.qcow2)`,
    2,
  );
}

/** Absolute paths for the disk and its base, so a unit or a later start finds the same files. */
export function absoluteDisk(disk: DiskRequest): DiskRequest {
  const abs: DiskRequest = { ...disk, path: resolve(disk.path) };
  if (disk.create) {
    abs.create = { ...disk.create };
    if (disk.create.backing !== undefined) abs.create.backing = resolve(disk.create.backing);
  }
  return abs;
}

/**
 * Make every disk ready for a spec: its format known (given, detected, or qcow2 for new=) and, with
 * `create`, a new= disk that is missing made now. Returns the files it made, for the caller to remove
 * if the start fails. A dry run passes create=false: nothing is written, a missing new= disk is fine.
 */
export function prepareDisks(disks: DiskRequest[], opts: { create: boolean }): { disks: DiskRequest[]; created: string[] } {
  const created: string[] = [];
  try {
    const ready = disks.map((d) => {
      const disk = absoluteDisk(d);
      if (disk.create) {
        const base = disk.create.backing;
        const baseFormat = base !== undefined ? baseImageFormat(base) : undefined;
        if (existsSync(disk.path)) {
          checkExistingNewDisk(disk.path, base);
        } else if (opts.create) {
          const args = ['create', '-q', '-f', 'qcow2'];
          if (base !== undefined) args.push('-b', base, '-F', baseFormat!);
          args.push(disk.path);
          if (disk.create.sizeBytes !== undefined) args.push(String(disk.create.sizeBytes));
          qemuImg(args, `cannot create disk ${disk.path}`);
          created.push(disk.path);
          // The guest's data: for the owner's eyes only, like everything else a VM makes.
          chmodSync(disk.path, 0o600);
        }
        return disk;
      }
      if (!existsSync(disk.path)) throw new UncloudError('NO_FILE', `--disk ${d.path}: no such file (to create one: --disk new=${d.path},size=<n>G)`, 2);
      if (disk.format === undefined) disk.format = detectFormat(disk.path);
      return disk;
    });
    return { disks: ready, created };
  } catch (err) {
    removeDisks(created);
    throw err;
  }
}

function baseImageFormat(base: string): DiskFormat {
  if (!existsSync(base)) throw new UncloudError('NO_FILE', `--disk backing=${base}: no such file`, 2);
  return runnableFormat(inspectImage(base), base, '--disk backing=');
}

/** A new= disk that exists already is used as it is, if it is what new= would have made. */
function checkExistingNewDisk(path: string, base: string | undefined): void {
  const info = inspectImage(path);
  if (info.format !== 'qcow2') {
    throw new UncloudError('DISK_FORMAT', `--disk new=${path}: the file exists and is ${printable(info.format)}, not qcow2; pass it as --disk ${path} or pick another path`, 2);
  }
  if (base !== undefined && info.backing !== base) {
    throw new UncloudError(
      'DISK_BACKING',
      `--disk new=${path}: the file exists and is ${info.backing ? `an overlay of ${info.backing}` : 'not an overlay'}, not of ${base}; pick another path or drop backing=`,
      2,
    );
  }
}

/** Give back disks a failed start made. Never throws. */
export function removeDisks(paths: string[]): void {
  for (const p of paths) rmSync(p, { force: true });
}
