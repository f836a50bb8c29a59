/** Waiting on a condition that nothing signals (a process gone, a flag an event handler sets). */

const POLL_MS = 50;

/**
 * Poll `cond` until it holds or `ms` pass; meanwhile `periodic.tick` runs every `periodic.every` ms.
 * Returns whether it held.
 */
export async function waitUntil(
  cond: () => boolean,
  ms: number,
  periodic?: { every: number; tick: (elapsedS: number) => void },
): Promise<boolean> {
  const start = Date.now();
  let next = start + (periodic?.every ?? 0);
  while (Date.now() - start < ms) {
    if (cond()) return true;
    if (periodic && Date.now() >= next) {
      periodic.tick(Math.round((Date.now() - start) / 1000));
      next += periodic.every;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return cond();
}
