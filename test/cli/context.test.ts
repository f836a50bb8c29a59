/** The table every listing prints: columns aligned, the last column not padded. */
import { describe, expect, it } from 'vitest';
import { table } from '../../src/cli/context.js';

describe('table', () => {
  it('aligns each column to its widest cell, two spaces apart, with no trailing blanks', () => {
    expect(table([['NAME', 'STATE', 'MACS'], ['web1', 'running', '42:00:00:00:00:01'], ['a-long-name', 'dead', '']])).toBe(
      ['NAME         STATE    MACS', 'web1         running  42:00:00:00:00:01', 'a-long-name  dead     '].join('\n'),
    );
  });
  it('a single row is itself', () => {
    expect(table([['a', 'b']])).toBe('a  b');
  });
});
