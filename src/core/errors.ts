/**
 * The one error type. Commands throw it; only cli/main.ts prints it and sets the exit code.
 * exitCode 2 = the user's input was wrong (usage), 1 = the operation failed.
 */
export class UncloudError extends Error {
  readonly code: string;
  readonly exitCode: number;

  constructor(code: string, message: string, exitCode = 1) {
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

export function isUncloudError(err: unknown): err is UncloudError {
  return err instanceof UncloudError;
}

/** Show a user's value inside a one-line error message: quotes and control characters escaped, long values cut. */
export function printable(text: string): string {
  const s = JSON.stringify(text).slice(1, -1);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
