/** Network namespaces with bridges, made for one test file and removed after it, so no test touches the host's network. */
import { execFileSync } from 'node:child_process';

let counter = 0;

export interface Netns {
  name: string;
  ip: (...args: string[]) => string;
  /** SIGKILL every process in the namespace (what a failed test left running). */
  killAll: () => void;
  remove: () => void;
}

export function createNetns(bridges: string[] = ['br0']): Netns {
  counter += 1;
  const name = `uctest-${process.pid}-${counter}`;
  execFileSync('ip', ['netns', 'add', name]);
  const ip = (...args: string[]): string => execFileSync('ip', ['netns', 'exec', name, 'ip', ...args], { encoding: 'utf8' });
  ip('link', 'set', 'lo', 'up');
  for (const br of bridges) {
    ip('link', 'add', br, 'type', 'bridge');
    ip('link', 'set', br, 'up');
  }
  const killAll = (): void => {
    try {
      const pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).split('\n').filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone already
        }
      }
    } catch {
      // namespace already gone
    }
  };
  return {
    name,
    ip,
    killAll,
    remove: () => {
      killAll();
      try {
        execFileSync('ip', ['netns', 'del', name]);
      } catch {
        // already removed
      }
    },
  };
}
