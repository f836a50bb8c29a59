/** Processes a test started or watches: alive or not (a zombie is not), and SIGKILL-then-wait. */
import { currentOwner } from '../../src/system/proc.js';
import { waitFor } from './cli.js';

/** Running: it exists and has not exited (a zombie whose parent has not reaped it is gone). */
export const alive = (pid: number): boolean => currentOwner(pid) !== null;

/** SIGKILL a process and wait until it is gone (its children may keep its pipes open: no waiting on them). */
export async function killAndWait(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return; // gone already
  }
  await waitFor(`pid ${pid} gone`, () => !alive(pid));
}
