/** Process identity from /proc: a pid plus its start time survives pid reuse; the command line says what it runs. */
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import type { Owner } from '../core/owner.js';

/** /proc/PID/stat is under 1 KiB (the command name in it at most 64 bytes). */
let statBuf: Buffer | undefined;

/** /proc/PID/stat in one read (readFileSync takes two more system calls: a stat, and a read that finds the end). */
function readStat(pid: number): string | null {
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/stat`, 'r');
  } catch {
    return null;
  }
  try {
    const buf = (statBuf ??= Buffer.alloc(4096));
    return buf.toString('latin1', 0, readSync(fd, buf, 0, buf.length, 0));
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or null if it is gone. */
export function processStartTime(pid: number): number | null {
  const stat = readStat(pid);
  if (stat === null) return null;
  // The command name (field 2) may contain spaces and ')': fields after it start past the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // A zombie has exited already; only its parent has not collected it yet.
  if (rest[0] === 'Z' || rest[0] === 'X') return null;
  const start = Number(rest[19]);
  return Number.isFinite(start) ? start : null;
}

/** The process as an Owner as it is now, or null when it is not running. */
export function currentOwner(pid: number): Owner | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const startTime = processStartTime(pid);
  return startTime === null ? null : { pid, startTime };
}

export function isOwnerAlive(owner: Owner): boolean {
  return processStartTime(owner.pid) === owner.startTime;
}

export interface OwnerLiveness {
  alive: (owner: Owner) => boolean;
  /** Records read since the last call are checked next (see ownerLiveness). */
  nextBatch: () => void;
}

/**
 * Owner liveness for a command that checks many records (mac list): the pids that run listed from /proc once
 * per batch, so an owner that is gone (most of the owners of a large pool) costs no /proc/PID/stat read. A
 * listing taken after a batch's records were read is right for them: an owner a record names ran when it was
 * written, so one missing from the listing has ended since, and a pid reused later comes with another start
 * time. An owner whose pid runs is read once and keeps its answer for the command. Call nextBatch() after
 * reading the next records, before checking their owners.
 */
export function ownerLiveness(): OwnerLiveness {
  // pid → start time → answer, for the pids seen running (few): numbers as keys, no string built per owner.
  const known = new Map<number, Map<number, boolean>>();
  let running: Set<number> | null = null;
  return {
    alive(owner) {
      const byStart = known.get(owner.pid);
      const seen = byStart?.get(owner.startTime);
      if (seen !== undefined) return seen;
      running ??= runningPids();
      if (!running.has(owner.pid)) return false;
      const alive = isOwnerAlive(owner);
      if (byStart) byStart.set(owner.startTime, alive);
      else known.set(owner.pid, new Map([[owner.startTime, alive]]));
      return alive;
    },
    nextBatch() {
      running = null;
    },
  };
}

/** The pids /proc lists (processes, not their other threads: an owner is a process). */
function runningPids(): Set<number> {
  const pids = new Set<number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return pids; // no /proc: no owner can be seen running (as processStartTime finds none)
  }
  for (const e of entries) {
    const pid = Number(e);
    if (Number.isInteger(pid)) pids.add(pid);
  }
  return pids;
}

/** A process's argv, or null when it is gone. */
export function processCmdline(pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
  } catch {
    return null;
  }
}

/**
 * Names of the tun/tap interfaces some process holds open (from /proc/PID/fdinfo's "iff:" line). A tap
 * qemu made goes away with its file descriptor; one nobody holds is a leftover.
 */
export function tapsHeldOpen(): Set<string> {
  const held = new Set<string>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((e) => /^[0-9]+$/.test(e));
  } catch {
    return held;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== '/dev/net/tun') continue;
        const iff = /^iff:\s*(\S+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1];
        if (iff) held.add(iff);
      } catch {
        // closed meanwhile
      }
    }
  }
  return held;
}
