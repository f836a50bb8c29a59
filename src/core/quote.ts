/** Quoting for the three places a value can land: a POSIX shell, a QEMU option list, a systemd unit. */

const SHELL_SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quote one word for a POSIX shell; safe words stay bare so printed commands stay readable. */
export function shellQuote(word: string): string {
  if (word !== '' && SHELL_SAFE.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A value inside a QEMU "key=value,key=value" option: QEMU reads ",," as a literal comma. */
export function qemuOptValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** The inverse, for options we parse ourselves (--disk, --cloud-init): split on single commas, ",," is a comma. */
export function splitOptionList(text: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== ',') cur += c;
    else if (text[i + 1] === ',') {
      cur += ',';
      i++;
    } else {
      parts.push(cur);
      cur = '';
    }
  }
  parts.push(cur);
  return parts;
}

const SYSTEMD_SAFE = /^[A-Za-z0-9_@+=:,./-]+$/;
/** Control characters: refused in every value that reaches a unit, a script, a record or the terminal. */
export const CONTROL_RE = /[\u0000-\u001f\u007f]/;

/** The longest VM name a lease may carry (`mac allocate --vm`): a record is printed in one table row. */
export const LEASE_NAME_MAX = 128;

/** 1 to `max` characters, none of them a control character: text a record may carry and a table may print. */
export function isPrintableText(text: unknown, max: number): text is string {
  return typeof text === 'string' && text.length > 0 && text.length <= max && !CONTROL_RE.test(text);
}

/**
 * Quote one word of a systemd Exec*= command line: double quotes with C escapes for \ and ",
 * and % and $ doubled so systemd expands no specifier or variable. Control characters cannot be
 * written safely and are refused.
 */
export function systemdExecWord(word: string): string {
  if (CONTROL_RE.test(word)) throw new Error(`cannot put a control character into a unit file: ${JSON.stringify(word)}`);
  const escaped = word.replaceAll('%', '%%').replaceAll('$', '$$$$');
  if (word !== '' && SYSTEMD_SAFE.test(word)) return escaped;
  return `"${escaped.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

/** A plain unit setting value (Description=, WantedBy=): % doubled; control characters and \ refused. */
export function systemdValue(value: string): string {
  if (CONTROL_RE.test(value) || value.includes('\\')) {
    throw new Error(`cannot put this value into a unit file: ${JSON.stringify(value)}`);
  }
  return value.replaceAll('%', '%%');
}
