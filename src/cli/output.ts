/**
 * stdout and stderr for a command's own lines, written with write(2) rather than through process.stdout and
 * process.stderr: creating those streams loads node:stream and node:net, ~3 ms of every command's start-up.
 * A line is out when the call returns, so nothing is left to drain at exit, unless something else (help
 * text, `logs`, `console`, qemu's stderr) used the streams: streamsUsed() says so.
 */
import { writeSync } from 'node:fs';

let used = false;
for (const name of ['stdout', 'stderr'] as const) {
  const desc = Object.getOwnPropertyDescriptor(process, name);
  const get = desc?.get;
  if (get && desc.configurable) Object.defineProperty(process, name, { ...desc, get: () => ((used = true), get.call(process)) });
}

/** Whether process.stdout or process.stderr was created, so output may still be queued on them. */
export const streamsUsed = (): boolean => used;

/** Write all of text to fd 1 or 2. */
export function write(fd: 1 | 2, text: string): void {
  let buf = Buffer.from(text);
  while (buf.length > 0) {
    try {
      buf = buf.subarray(writeSync(fd, buf));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // The reader is gone (`| head`): the rest is not wanted.
      if (code === 'EPIPE') return;
      // A non-blocking pipe that is full (its other end set O_NONBLOCK): the stream queues the rest.
      if (code === 'EAGAIN') {
        (fd === 1 ? process.stdout : process.stderr).write(buf);
        return;
      }
      throw err;
    }
  }
}
