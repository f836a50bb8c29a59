/** Process identity from /proc: a pid plus its start time survives pid reuse; the command line says what it runs. */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Owner } from '../core/owner.js';

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or null if it is gone. */
export function processStartTime(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
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
