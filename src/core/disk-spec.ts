/**
 * `--disk` as the user typed it → a DiskRequest, and back (a unit's ExecStartPre gets the same text again).
 * Pure: whether the file exists, its format and its creation are the business of system/qemu-img.ts.
 *
 *   --disk <path>[,format=raw|qcow2][,readonly=on|off][,cache=<mode>]
 *   --disk new=<path>[,size=<n>G][,backing=<base>][,readonly=…][,cache=…]   (a qcow2 made when missing)
 *
 * A comma inside a path is written twice (",,"), as in QEMU's own option lists.
 */
import { printable, usageError } from './errors.js';
import { CONTROL_RE, qemuOptValue as escapeCommas, splitOptionList } from './quote.js';

export const DISK_FORMATS = ['raw', 'qcow2'] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];
export const CACHE_MODES = ['none', 'writeback', 'writethrough', 'directsync', 'unsafe'] as const;
export type CacheMode = (typeof CACHE_MODES)[number];

/** A qcow2 made by uncloud-vm with qemu-img when the file does not exist yet. */
export interface DiskCreate {
  /** Virtual size in bytes; without it an overlay takes its base's size. */
  sizeBytes?: number;
  /** The base image of an overlay (absolute once resolved). */
  backing?: string;
}

export interface DiskRequest {
  path: string;
  /** Unset until detected (system/qemu-img.ts); a spec for qemu always has it. */
  format?: DiskFormat;
  readonly: boolean;
  cache?: CacheMode;
  create?: DiskCreate;
}

const DISK_SYNTAX = '<path>[,format=raw|qcow2][,readonly=on|off][,cache=<mode>] or new=<path>,size=<n>G[,backing=<base>]';
const KEYS = ['file', 'new', 'format', 'readonly', 'cache', 'size', 'backing'];
const SIZE_UNITS: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };
/** qcow2's own limit is 64 TiB per image with default clusters; a larger request is surely a typo. */
const MAX_DISK_BYTES = 64 * 2 ** 40;


/** "10G", "512M", "1T" (binary units; "GiB" and "G" alike) → bytes. */
export function parseSize(text: string, what: string): number {
  const m = /^([0-9]+)([KMGT])(i?B)?$/i.exec(text);
  const bytes = m ? Number(m[1]) * SIZE_UNITS[m[2]!.toUpperCase()]! : NaN;
  if (!m || bytes <= 0 || bytes > MAX_DISK_BYTES) {
    throw usageError(`invalid ${what} '${printable(text)}': expected a size such as 10G, 512M or 1T (more than 0, at most 64T)`);
  }
  return bytes;
}

/** Bytes → the shortest exact "<n>K|M|G|T" text (what a unit writes back). */
export function formatSize(bytes: number): string {
  for (const unit of ['T', 'G', 'M', 'K']) {
    if (bytes % SIZE_UNITS[unit]! === 0) return `${bytes / SIZE_UNITS[unit]!}${unit}`;
  }
  return `${bytes}`;
}

function checkPath(text: string, path: string, key: string): string {
  if (path === '' || CONTROL_RE.test(path)) {
    throw usageError(`invalid --disk '${printable(text)}': ${key} must be a non-empty path free of control characters`);
  }
  return path;
}

export function parseDisk(text: string): DiskRequest {
  const bad = (why: string) => usageError(`invalid --disk '${printable(text)}': ${why}`);
  const parts = splitOptionList(text);
  let path: string | undefined;
  let isNew = false;
  const disk: DiskRequest = { path: '', readonly: false };
  let size: number | undefined;
  let backing: string | undefined;
  parts.forEach((part, i) => {
    const eq = part.indexOf('=');
    const key = eq < 0 ? '' : part.slice(0, eq);
    // The first item is the path unless it starts with a known key (file=, new=).
    if (i === 0 && !KEYS.includes(key)) {
      path = checkPath(text, part, 'the path');
      return;
    }
    const value = part.slice(eq + 1);
    if (eq < 0) throw bad(`'${printable(part)}' is not key=value; a comma in a path is written ',,'`);
    if ((key === 'file' || key === 'new') && i === 0) {
      path = checkPath(text, value, key);
      isNew = key === 'new';
    } else if (key === 'format') {
      if (!(DISK_FORMATS as readonly string[]).includes(value)) throw bad(`format is raw or qcow2`);
      disk.format = value as DiskFormat;
    } else if (key === 'readonly') {
      if (value !== 'on' && value !== 'off') throw bad('readonly is on or off');
      disk.readonly = value === 'on';
    } else if (key === 'cache') {
      if (!(CACHE_MODES as readonly string[]).includes(value)) throw bad(`cache is one of ${CACHE_MODES.join(', ')}`);
      disk.cache = value as CacheMode;
    } else if (key === 'size') {
      size = parseSize(value, 'disk size');
    } else if (key === 'backing') {
      backing = checkPath(text, value, 'backing');
    } else if (key === 'file' || key === 'new') {
      throw bad(`${key}= comes first`);
    } else {
      throw bad(`unknown key '${printable(key)}'; allowed: format, readonly, cache, or new=, size, backing`);
    }
  });
  if (path === undefined) throw bad(`expected ${DISK_SYNTAX}`);
  disk.path = path;
  if (isNew) {
    if (size === undefined && backing === undefined) throw bad('new= needs size=<n>G (or backing=<base>, whose size it takes)');
    if (disk.format === 'raw') throw bad('new= makes a qcow2 disk; format=raw does not go with it');
    disk.format = 'qcow2';
    disk.create = {};
    if (size !== undefined) disk.create.sizeBytes = size;
    if (backing !== undefined) disk.create.backing = backing;
  } else if (size !== undefined || backing !== undefined) {
    throw bad('size= and backing= go with new=<path> (a disk to create)');
  }
  return disk;
}

/** The option text that parses back to this request (parseDisk(formatDisk(d)) equals d). */
export function formatDisk(disk: DiskRequest): string {
  const parts = [disk.create ? `new=${escapeCommas(disk.path)}` : `file=${escapeCommas(disk.path)}`];
  if (disk.create?.sizeBytes !== undefined) parts.push(`size=${formatSize(disk.create.sizeBytes)}`);
  if (disk.create?.backing !== undefined) parts.push(`backing=${escapeCommas(disk.create.backing)}`);
  if (disk.format !== undefined && !disk.create) parts.push(`format=${disk.format}`);
  if (disk.readonly) parts.push('readonly=on');
  if (disk.cache !== undefined) parts.push(`cache=${disk.cache}`);
  return parts.join(',');
}
