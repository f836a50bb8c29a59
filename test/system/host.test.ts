/** findExecutable finds what the shell would run: on PATH in order, a name with '/' as a path, executables only. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bridgeExists, findExecutable, hostFacts } from '../../src/system/host.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest();

describe('findExecutable', () => {
  it('the first executable file of that name on PATH; not a plain file, not a directory', () => {
    const [a, b, c] = ['a', 'b', 'c'].map((d) => join(tmp.path, d));
    for (const d of [a!, b!, c!]) mkdirSync(d);
    writeFileSync(join(a!, 'qemu'), '', { mode: 0o644 }); // not executable
    mkdirSync(join(b!, 'qemu')); // a directory
    writeFileSync(join(c!, 'qemu'), '#!/bin/sh\n', { mode: 0o755 });
    expect(findExecutable('qemu', [a, b, c].join(':'))).toBe(join(c!, 'qemu'));
    expect(findExecutable('qemu', [a, b].join(':'))).toBeNull();
    expect(findExecutable('qemu', '')).toBeNull();
  });

  it("a name with '/' is a path, PATH or not", () => {
    writeFileSync(join(tmp.path, 'q'), '', { mode: 0o755 });
    expect(findExecutable(join(tmp.path, 'q'), '/nonexistent')).toBe(join(tmp.path, 'q'));
    expect(findExecutable(join(tmp.path, 'nope'), tmp.path)).toBeNull();
  });
});

describe('hostFacts and bridgeExists', () => {
  it('this host has memory and CPUs; a bridge that is not there is not', () => {
    const h = hostFacts();
    expect(h.totalMemoryMiB).toBeGreaterThan(0);
    expect(h.cpus).toBeGreaterThan(0);
    expect(typeof h.kvmUsable).toBe('boolean');
    expect(bridgeExists('uc-no-such-br')).toBe(false);
  });
});
