/**
 * Rendering of the files in templates/: every {{key}} is replaced by a value passed through the
 * escaper of the target language (shell or systemd), so no user value is ever interpolated raw.
 * {{!key}} takes a value the caller built already quoted, word by word (a whole command line).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const TEMPLATE_DIR = fileURLToPath(new URL('../../templates/', import.meta.url));

export function render(
  template: string,
  values: Record<string, string>,
  escape: (v: string) => string,
  quoted: Record<string, string> = {},
): string {
  return template.replace(/\{\{(!?)([a-zA-Z0-9_]+)\}\}/g, (_m, bang: string, key: string) => {
    const value = bang ? quoted[key] : values[key];
    if (value === undefined) throw new Error(`template value '${bang}${key}' missing`);
    return bang ? value : escape(value);
  });
}

export function loadTemplate(name: string): string {
  return readFileSync(`${TEMPLATE_DIR}${name}`, 'utf8');
}
