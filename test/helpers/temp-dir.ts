/** A fresh temp dir for each test of a file, removed after it. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';

export function tempDirEachTest(prefix = 'uncloud-vm-test-'): { readonly path: string } {
  const dir = { path: '' };
  beforeEach(() => {
    dir.path = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => rmSync(dir.path, { recursive: true, force: true }));
  return dir;
}
