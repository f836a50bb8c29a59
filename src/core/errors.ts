/**
 * The one error type. Commands throw it; only cli/main.ts prints it and sets the exit code.
 * exitCode 2 = the user's input was wrong (usage), 1 = the operation failed.
 */

/**
 * Every code an UncloudError carries: stable names a caller (or a test) can tell failures apart by. A new
 * failure gets a code here first.
 */
export const ERROR_CODES = [
  // the user's input (exit 2)
  'USAGE', 'CONFIG', 'NO_FILE', 'DISK_FORMAT', 'DISK_BACKING',
  // the pool and its store
  'POOL_EXHAUSTED', 'MAC_HELD', 'NOT_HELD', 'LEASE_LIVE', 'LEASE_GONE', 'UUID_IN_USE', 'STATE_DAMAGED', 'STATE_VERSION',
  'WRITE_FAILED', 'LOCK_BUSY', 'LOCK_LOST', 'DIR_UNSAFE', 'GIVE_BACK_FAILED',
  'ETCD_FAILED', 'ETCD_UNAVAILABLE', 'ETCD_CONTENTION', 'NO_AGENT',
  // VMs and their qemu
  'NO_VM', 'NOT_RUNNING', 'VM_RUNNING', 'VM_BUSY', 'VM_STALE', 'QEMU_NOT_FOUND', 'QEMU_FAILED', 'QEMU_KILLED', 'QEMU_TIMEOUT', 'QEMU_IMG',
  'GUEST_DEAF', 'INTERRUPTED', 'SEED', 'NO_LOGS', 'NO_CONSOLE', 'CONSOLE_BUSY', 'CONSOLE_UNAVAILABLE',
  'QMP_TIMEOUT', 'QMP_UNAVAILABLE', 'QMP_CLOSED', 'QMP_PROTOCOL', 'QMP_ERROR',
  // the host: bridges, networks, systemd
  'NO_BRIDGE', 'NO_NETWORK', 'NO_UNDERLAY', 'NO_IPROUTE', 'NETWORK_FAILED', 'NETWORK_CONFLICT', 'NETWORK_IN_USE', 'SYSTEMCTL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class UncloudError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;

  constructor(code: ErrorCode, message: string, exitCode = 1) {
    super(message);
    this.name = 'UncloudError';
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** A wrong value or flag from the user: exit code 2. */
export function usageError(message: string): UncloudError {
  return new UncloudError('USAGE', message, 2);
}

/** Show a user's value inside a one-line error message: quotes and control characters escaped, long values cut. */
export function printable(text: string): string {
  const s = JSON.stringify(text).slice(1, -1);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
