/**
 * Rendering of the files in templates/: every {{key}} is replaced by a value passed through the
 * escaper of the target language (shell or systemd), so no user value is ever interpolated raw.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const TEMPLATE_DIR = fileURLToPath(new URL('../../templates/', import.meta.url));

export function render(template: string, values: Record<string, string>, escape: (v: string) => string): string {
  return template.replace(/\{\{([a-zA-Z0-9_]+)\}\}/g, (_m, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`template value '${key}' missing`);
    return escape(value);
  });
}

export function loadTemplate(name: string): string {
  return readFileSync(`${TEMPLATE_DIR}${name}`, 'utf8');
}
