/**
 * A random (version 4) UUID from the kernel's random source. node:crypto's randomUUID does the same, but
 * loading node:crypto costs a command ~5 ms of start-up.
 */
import { closeSync, openSync, readSync } from 'node:fs';

export function randomUuid(): string {
  const b = Buffer.alloc(16);
  const fd = openSync('/dev/urandom', 'r');
  try {
    for (let n = 0; n < b.length; ) n += readSync(fd, b, n, b.length - n, null);
  } finally {
    closeSync(fd);
  }
  b[6] = (b[6]! & 0x0f) | 0x40; // version 4
  b[8] = (b[8]! & 0x3f) | 0x80; // variant 10
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
