import { printable, usageError } from '../../../core/errors.js';

/** A --timeout / --stop-timeout value: whole seconds from 0 to 86400. */
export function parseTimeout(text: string, flag: string): number {
  if (!/^[0-9]+$/.test(text) || Number(text) > 86400) {
    throw usageError(`invalid ${flag} '${printable(text)}': expected whole seconds from 0 to 86400`);
  }
  return Number(text);
}
