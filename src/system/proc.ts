/** Process identity from /proc: a pid plus its start time survives pid reuse. */
import { readFileSync } from 'node:fs';
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

export function ownerOf(pid: number): Owner {
  const startTime = processStartTime(pid);
  if (startTime === null) throw new Error(`process ${pid} is not running`);
  return { pid, startTime };
}

export function isOwnerAlive(owner: Owner): boolean {
  return processStartTime(owner.pid) === owner.startTime;
}
