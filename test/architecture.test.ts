/**
 * The house drawn from the imports: core at the bottom, then system, store, qemu, and cli on top. Every
 * import in src/ points down (or stays on its floor); none runs back up. The core is pure: no package and
 * only node modules that compute (path, crypto hashes, address syntax). execa is qemu/'s alone.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cli.js';

const FLOORS = ['core', 'system', 'store', 'qemu', 'cli'] as const;
type Floor = (typeof FLOORS)[number];
const SRC = join(ROOT, 'src');

interface Import {
  file: string;
  from: Floor;
  target: string;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

const floorOf = (path: string): Floor => {
  const top = relative(SRC, path).split('/')[0];
  if (!(FLOORS as readonly string[]).includes(top!)) throw new Error(`${relative(ROOT, path)} is on no floor of the house (${FLOORS.join(', ')})`);
  return top as Floor;
};

/** Static imports and re-exports, dynamic import() and `typeof import()` types alike. */
const IMPORT_RE = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;

const imports: Import[] = sources(SRC).flatMap((file) =>
  [...readFileSync(file, 'utf8').matchAll(IMPORT_RE)].map((m) => ({ file: relative(ROOT, file), from: floorOf(file), target: m[1]! })),
);
const local = imports.filter((i) => i.target.startsWith('.'));
const floorOfImport = (i: Import): Floor => floorOf(resolve(dirname(join(ROOT, i.file)), i.target));

describe('the house drawn from the imports', () => {
  it('reads the imports of every source file', () => {
    // A regex that matched nothing would pass every test below: make sure it sees the house.
    expect(new Set(imports.map((i) => i.file)).size).toBeGreaterThan(60);
    expect(local.length).toBeGreaterThan(300);
  });

  it('has no arrow running back up: each floor imports only itself and the floors below', () => {
    const up = local
      .filter((i) => FLOORS.indexOf(floorOfImport(i)) > FLOORS.indexOf(i.from))
      .map((i) => `${i.file} (${i.from}) imports ${i.target} (${floorOfImport(i)})`);
    expect(up).toEqual([]);
  });

  it('is the house the design guide draws', () => {
    const house: Record<string, string[]> = {};
    for (const i of local) {
      const to = floorOfImport(i);
      if (to !== i.from) house[i.from] = [...new Set([...(house[i.from] ?? []), to])].sort();
    }
    expect(house).toEqual({
      cli: ['core', 'qemu', 'store', 'system'],
      qemu: ['core', 'store', 'system'],
      store: ['core', 'system'],
      system: ['core'],
    });
  });

  it('keeps the core pure: no package, and of node only what computes', () => {
    const outside = imports.filter((i) => i.from === 'core' && !i.target.startsWith('.')).map((i) => `${i.file}: ${i.target}`);
    expect(outside.filter((s) => !/: node:(path|crypto|net)$/.test(s))).toEqual([]);
    // node:net for isIP only, node:crypto for a hash: nothing that opens a socket or reads a file.
    for (const file of new Set(imports.filter((i) => i.from === 'core').map((i) => i.file))) {
      const text = readFileSync(join(ROOT, file), 'utf8');
      expect(text, file).not.toMatch(/\b(createConnection|createServer|randomUUID|randomBytes|process\.(env|exit|cwd|umask)|Date\.now|Math\.random)\b/);
    }
  });

  it('leaves execa to qemu/', () => {
    expect([...new Set(imports.filter((i) => i.target === 'execa').map((i) => i.from))]).toEqual(['qemu']);
  });
});
