/**
 * Rendering of the files in templates/: every {{key}} is replaced by a value passed through the
 * escaper of the target language (shell or systemd), so no user value is ever interpolated raw.
 * {{!key}} takes a value the caller built already quoted, word by word (a whole command line).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** templates/ (name → text) as the build inlines it (scripts/bundle.mjs): the installed command reads no template file. */
const INLINED: Record<string, string> | undefined = undefined;

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
  return INLINED?.[name] ?? readFileSync(fileURLToPath(new URL(`../../templates/${name}`, import.meta.url)), 'utf8');
}
