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
