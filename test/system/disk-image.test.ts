/** Disks as qemu-img sees them: formats detected, refused when not runnable, new= disks made and given back. */
import { execFileSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { absoluteDisk, detectFormat, prepareDisks } from '../../src/system/disk-image.js';
import { tempDirEachTest } from '../helpers/temp-dir.js';

const tmp = tempDirEachTest();
const img = (...args: string[]) => execFileSync('qemu-img', args, { encoding: 'utf8' });

describe('absoluteDisk', () => {
  it('makes the disk and its base absolute, leaves the rest', () => {
    expect(absoluteDisk({ path: 'o.qcow2', readonly: false, create: { backing: 'base.qcow2' } })).toEqual({
      path: join(process.cwd(), 'o.qcow2'),
      readonly: false,
      create: { backing: join(process.cwd(), 'base.qcow2') },
    });
  });
});

describe('detectFormat', () => {
  it.each(['raw', 'qcow2'])('%s', (format) => {
    const p = join(tmp.path, `d.${format}`);
    img('create', '-q', '-f', format, p, '1M');
    expect(detectFormat(p)).toBe(format);
  });
  it('a vmdk is refused with the conversion that fixes it', () => {
    const p = join(tmp.path, 'x.vmdk');
    img('create', '-q', '-f', 'vmdk', p, '1M');
    expect(() => detectFormat(p)).toThrow(expect.objectContaining({ exitCode: 2, message: expect.stringContaining(`qemu-img convert -O qcow2 ${p} <new>.qcow2`) }));
  });
});

describe('prepareDisks', () => {
  it('makes a missing new= disk (qcow2, 0600) and reports it made; a dry run makes nothing', () => {
    const p = join(tmp.path, 'n.qcow2');
    expect(prepareDisks([{ path: p, readonly: false, create: { sizeBytes: 2 ** 20 } }], { create: false }).created).toEqual([]);
    expect(existsSync(p)).toBe(false);
    const r = prepareDisks([{ path: p, readonly: false, create: { sizeBytes: 2 ** 20 } }], { create: true });
    expect(r.created).toEqual([p]);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(JSON.parse(img('info', '--output=json', p))).toMatchObject({ format: 'qcow2', 'virtual-size': 2 ** 20 });
  });

  it('a failure after a disk was made gives the made disk back', () => {
    const made = join(tmp.path, 'made.qcow2');
    const vmdk = join(tmp.path, 'x.vmdk');
    img('create', '-q', '-f', 'vmdk', vmdk, '1M');
    expect(() => prepareDisks([{ path: made, readonly: false, create: { sizeBytes: 2 ** 20 } }, { path: vmdk, readonly: false }], { create: true })).toThrow(/vmdk image/);
    expect(existsSync(made)).toBe(false);
  });

  it('a missing plain disk says how to make one', () => {
    writeFileSync(join(tmp.path, 'there.img'), '');
    expect(() => prepareDisks([{ path: join(tmp.path, 'gone.img'), readonly: false }], { create: true })).toThrow(`--disk ${join(tmp.path, 'gone.img')}: no such file (to create one: --disk new=${join(tmp.path, 'gone.img')},size=<n>G)`);
  });
});
