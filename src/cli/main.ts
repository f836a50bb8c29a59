#!/usr/bin/env node
/** Entry point: run the program, print errors as one line, set the exit code. The only process.exit. */
import { CommanderError } from 'commander';
import { UncloudError } from '../core/errors.js';
import { buildProgram, type ProgramResult } from './program.js';

const result: ProgramResult = { exitCode: 0 };

function fail(message: string, code: number): void {
  process.stderr.write(`uncloud-vm: ${message}\n`);
  process.exitCode = code;
}

try {
  await buildProgram(result).parseAsync(process.argv);
  process.exitCode = result.exitCode;
} catch (err) {
  if (err instanceof UncloudError) {
    fail(err.message, err.exitCode);
  } else if (err instanceof CommanderError) {
    if (err.exitCode === 0) process.exitCode = 0;
    else fail(`${err.message.replace(/^error: /, '')} (see --help)`, 2);
  } else if (err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string') {
    fail(err.message, 1);
  } else {
    fail(`unexpected error (this is a bug, please report it):\n${err instanceof Error ? err.stack : String(err)}`, 1);
  }
}

// Wait for stdout to drain rather than exiting at once, so piped output is never cut.
process.stdout.write('', () => process.exit());
