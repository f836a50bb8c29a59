/** Properties over generated input (fast-check): MAC text round-trips; no user value can split or extend a qemu argument. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatMac, parseMac } from '../../src/core/mac.js';
import { buildQemuArgv, type VmSpec } from '../../src/core/qemu-argv.js';
import { shellQuote, systemdExecWord } from '../../src/core/quote.js';

/** Split a QEMU option list the way QEMU does: ',' separates, ',,' is a literal comma. */
function qemuOptList(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',') {
      if (text[i + 1] === ',') {
        cur += ',';
        i++;
      } else {
        out.push(cur);
        cur = '';
      }
    } else cur += text[i];
  }
  out.push(cur);
  return out;
}

const anyText = fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\u0000'));

function spec(v: { name: string; path: string; append: string; sock: string }): VmSpec {
  return {
    qemu: 'qemu-system-x86_64',
    name: v.name,
    uuid: '0f0e0d0c-0b0a-4908-8706-050403020100',
    machine: 'pc',
    accel: 'tcg',
    memoryMiB: 64,
    cores: 1,
    nics: [{ index: 0, mac: '42:00:00:00:00:01', tap: 'uc0f0e0d0c0bn0', bridge: 'br0', ifup: `${v.path}/up`, ifdown: `${v.path}/down` }],
    disks: [{ path: v.path, format: 'qcow2', readonly: false }],
    cdrom: v.path,
    kernel: v.path,
    initrd: v.path,
    append: v.append,
    qmpSocket: v.sock,
    operatorQmpSocket: `${v.sock}/op`,
    pidfile: v.path,
    console: false,
    consoleSocket: `${v.sock}/console`,
    serialLog: v.path,
    noReboot: false,
    vncSocket: v.sock,
    seed: v.path,
  };
}

describe('properties', () => {
  it('parseMac(formatMac(x)) === x for every 48-bit value', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 48 - 1 }), (x) => parseMac(formatMac(x)) === x), { numRuns: 2000 });
  });

  it('any spelling of a MAC (case, - or :) parses to the same value and formats canonically', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }), fc.boolean(), fc.constantFrom(':', '-'), (bytes, upper, sep) => {
        const hex = bytes.map((b) => b.toString(16).padStart(2, '0'));
        const text = (upper ? hex.map((h) => h.toUpperCase()) : hex).join(sep);
        return formatMac(parseMac(text)) === hex.join(':');
      }),
    );
  });

  it('the argv builder never lets a value add an argument or a qemu sub-option', () => {
    fc.assert(
      fc.property(anyText, anyText, anyText, anyText, (name, path, append, sock) => {
        const argv = buildQemuArgv(spec({ name, path, append, sock }));
        const base = buildQemuArgv(spec({ name: 'n', path: '/p', append: 'a', sock: '/s' }));
        expect(argv.length).toBe(base.length);
        const after = (opt: string) => argv[argv.indexOf(opt) + 1]!;
        const all = (opt: string) => argv.flatMap((a, i) => (a === opt ? [argv[i + 1]!] : []));
        expect(qemuOptList(after('-name'))).toEqual([name]);
        expect(all('-drive').map(qemuOptList)).toEqual([
          [`file=${path}`, 'media=cdrom'],
          [`file=${path}`, 'if=virtio', 'format=qcow2'],
          [`file=${path}`, 'if=virtio', 'format=raw', 'readonly=on'],
        ]);
        expect(qemuOptList(after('-vnc'))).toEqual([`unix:${sock}`]);
        expect(qemuOptList(after('-chardev'))).toEqual(['socket', 'id=serial0', `path=${sock}/console`, 'server=on', 'wait=off', `logfile=${path}`, 'logappend=on']);
        expect(all('-qmp').map(qemuOptList)).toEqual([
          [`unix:${sock}`, 'server=on', 'wait=off'],
          [`unix:${sock}/op`, 'server=on', 'wait=off'],
        ]);
        expect(qemuOptList(after('-netdev'))).toEqual(['tap', 'id=net0', 'ifname=uc0f0e0d0c0bn0', `script=${path}/up`, `downscript=${path}/down`]);
        // Arguments that qemu takes whole stay whole.
        expect(after('-append')).toBe(append);
        expect(after('-kernel')).toBe(path);
        expect(after('-pidfile')).toBe(path);
      }),
      { numRuns: 500 },
    );
  });

  it('shell quoting: sh reads back exactly the word', async () => {
    const { spawnSync } = await import('node:child_process');
    const words = fc.sample(anyText, 150);
    const script = `for a in ${words.map(shellQuote).join(' ')}; do printf '%s\\0' "$a"; done`;
    const r = spawnSync('sh', ['-c', script], { encoding: 'utf8' });
    expect(r.stdout.split('\u0000').slice(0, -1)).toEqual(words);
  });

  it('systemd quoting never lets % or $ through unescaped, and refuses control characters', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (w) => {
        if (/[\u0000-\u001f\u007f]/.test(w)) {
          expect(() => systemdExecWord(w)).toThrow();
          return;
        }
        const q = systemdExecWord(w);
        expect(q.replaceAll('%%', '').includes('%')).toBe(false);
        expect(q.replaceAll('$$', '').includes('$')).toBe(false);
      }),
    );
  });
});
