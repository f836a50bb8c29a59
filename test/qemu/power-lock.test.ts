/**
 * The power lock that lets one `stop` or `reboot` of a VM act at a time, taken by separate processes at once:
 * exactly one acts, the others are refused with VM_BUSY, and nothing of the lock is left afterwards. Above all
 * when the lock's last holder was killed: every contender finds it dead, and only one may take it over.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { currentOwner } from '../../src/system/proc.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest('uncloud-vm-power-lock-');
const POWER = new URL('../../dist/qemu/power.js', import.meta.url).href;

/** One process taking the lock at `path` (after `go` exists), holding it 300 ms while it appends its pid to `acted`. */
function contender(path: string, acted: string, go: string): Promise<string> {
  const script = `
    import { appendFileSync, existsSync } from 'node:fs';
    const { withPowerLock } = await import(${JSON.stringify(POWER)});
    while (!existsSync(${JSON.stringify(go)})) await new Promise((r) => setTimeout(r, 2));
    try {
      await withPowerLock(${JSON.stringify(path)}, 'vm1', 'stopped', async () => {
        appendFileSync(${JSON.stringify(acted)}, process.pid + '\\n');
        await new Promise((r) => setTimeout(r, 300));
      });
      process.stdout.write('ok');
    } catch (e) {
      process.stdout.write(String(e.code));
    }`;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('error', reject);
    p.on('close', () => resolve(out));
  });
}

/** `n` contenders released at once; what each printed, and the pids that acted. */
async function race(n: number, round: number): Promise<{ results: string[]; acted: string[] }> {
  const path = join(tmp.path, 'power.lock');
  const acted = join(tmp.path, `acted-${round}`);
  const go = join(tmp.path, `go-${round}`);
  writeFileSync(acted, '');
  const all = Array.from({ length: n }, () => contender(path, acted, go));
  // Every contender is loaded and waiting before the go.
  await new Promise((r) => setTimeout(r, 600));
  writeFileSync(go, '');
  const results = await Promise.all(all);
  return { results, acted: readFileSync(acted, 'utf8').split('\n').filter(Boolean) };
}

/** What a stop killed while it held the lock leaves: its owner, gone. */
function deadHolderLock(path: string): void {
  const me = currentOwner(process.pid)!;
  writeFileSync(path, `${JSON.stringify({ pid: 2 ** 30 + 7, startTime: me.startTime, verb: 'stopped' })}\n`);
}

describe('power lock, taken by separate processes at once', () => {
  it('the last holder killed: of every contender that finds its lock dead, exactly one takes it over and acts', { timeout: 120_000 }, async () => {
    for (let round = 0; round < 8; round++) {
      deadHolderLock(join(tmp.path, 'power.lock'));
      const { results, acted } = await race(6, round);
      expect(results.filter((r) => r === 'ok'), `round ${round}: ${results.join(' ')}`).toHaveLength(1);
      expect(results.filter((r) => r !== 'ok').every((r) => r === 'VM_BUSY'), results.join(' ')).toBe(true);
      expect(acted, `round ${round}`).toHaveLength(1);
      // Nothing of the lock is left: not the lock, not a contender's whole copy, not the takeover lock.
      expect(readdirSync(tmp.path).filter((f) => f.startsWith('power.lock'))).toEqual([]);
    }
  });

  it('no lock there: exactly one acts, and nothing is left', { timeout: 60_000 }, async () => {
    const { results, acted } = await race(4, 0);
    expect(results.filter((r) => r === 'ok')).toHaveLength(1);
    expect(acted).toHaveLength(1);
    expect(readdirSync(tmp.path).filter((f) => f.startsWith('power.lock'))).toEqual([]);
  });

  it('a live holder: every contender is refused and its lock stays', { timeout: 60_000 }, async () => {
    const path = join(tmp.path, 'power.lock');
    const text = `${JSON.stringify({ ...currentOwner(process.pid)!, verb: 'rebooted' })}\n`;
    writeFileSync(path, text);
    const { results, acted } = await race(3, 0);
    expect(results).toEqual(['VM_BUSY', 'VM_BUSY', 'VM_BUSY']);
    expect(acted).toEqual([]);
    expect(existsSync(path) && readFileSync(path, 'utf8')).toBe(text);
  });
});
