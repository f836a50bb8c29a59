/** UncloudError's codes: the union holds exactly the codes src/ throws, each once. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, printable, UncloudError, usageError } from '../../src/core/errors.js';

const SRC = join(import.meta.dirname, '../../src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('error codes', () => {
  const text = sources(SRC)
    .filter((f) => !f.endsWith('core/errors.ts'))
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');

  it('are listed once each', () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
  });

  it.each(ERROR_CODES.filter((c) => c !== 'USAGE'))('%s is thrown somewhere in src/', (code) => {
    expect(text).toContain(`'${code}'`);
  });

  it('USAGE is made only by usageError(), which gives exit code 2', () => {
    expect(text).not.toMatch(/UncloudError\(\s*'USAGE'/);
    expect(text).toMatch(/usageError\(/);
    const e = usageError('bad');
    expect([e.code, e.exitCode, e.message, e instanceof UncloudError]).toEqual(['USAGE', 2, 'bad', true]);
  });

  it('other errors exit 1 unless told', () => {
    expect(new UncloudError('NO_VM', 'x').exitCode).toBe(1);
    expect(new UncloudError('QEMU_FAILED', 'x', 3).exitCode).toBe(3);
  });

  it.each([
    ['web1', 'web1'],
    ['a"b', 'a\\"b'],
    ['tab\there', 'tab\\there'],
    ['x'.repeat(100), `${'x'.repeat(77)}...`],
  ])('printable(%j) is %j', (input, want) => {
    expect(printable(input)).toBe(want);
  });
});
