/** Who a VM is: its name, its UUID, and the v5 namespace that ties a named VM's UUID to its name. */
import { printable, usageError } from './errors.js';

/** Namespace of the v5 UUIDs derived from VM names: a named VM keeps its UUID. */
export const NAME_NAMESPACE = 'e8a3ffe0-78d6-4e36-9d77-c171da80f6f8';

/** What a VM name may be; also what `stop`/`status` accept besides a UUID. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** VM names end up in tap-free file names, QMP socket paths and systemd unit names. */
export function validateName(text: string): string {
  if (!NAME_RE.test(text)) {
    throw usageError(
      `invalid VM name '${printable(text)}': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return text;
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

export function validateUuid(text: string): string {
  if (!UUID_RE.test(text)) {
    throw usageError(`invalid --uuid '${printable(text)}': expected a UUID like 123e4567-e89b-42d3-a456-426614174000`);
  }
  return text.toLowerCase();
}

/** Where UUIDs come from: random for an unnamed VM, derived (v5 in NAME_NAMESPACE) for a named one. */
export interface UuidSource {
  random: () => string;
  forName: (name: string) => string;
}
