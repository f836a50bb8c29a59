#!/usr/bin/env node
/** Entry point: run the program, print errors as one line, set the exit code. The only process.exit. */
import { CommanderError } from 'commander';
import { UncloudError } from '../core/errors.js';
import { streamsUsed, write } from './output.js';
import { buildProgram, type ProgramResult } from './program.js';

const result: ProgramResult = { exitCode: 0 };

/** commander's "error: unknown option '--x'\n(Did you mean --y?)" as one line: "unknown option '--x'; did you mean --y?". */
function oneLine(message: string): string {
  return message
    .replace(/^error: /, '')
    .split('\n')
    .map((l) => l.trim().replace(/^\(Did you mean (.*)\)$/, 'did you mean $1'))
    .filter((l) => l !== '')
    .join('; ');
}

function fail(message: string, code: number): void {
  write(2, `uncloud-vm: ${message}\n`);
  process.exitCode = code;
}

// No top-level await: the same code runs as the CommonJS bundle the installed command loads.
async function main(): Promise<void> {
  try {
    await (await buildProgram(result, process.argv.slice(2))).parseAsync(process.argv);
    process.exitCode = result.exitCode;
  } catch (err) {
    if (err instanceof UncloudError) {
      fail(err.message, err.exitCode);
    } else if (err instanceof CommanderError) {
      // A verb that only groups others (the program itself, `mac`) shows its help when called bare: not an error.
      if (err.exitCode === 0 || err.code === 'commander.help') process.exitCode = 0;
      else fail(`${oneLine(err.message)} (see --help)`, 2);
    } else if (err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string') {
      fail(err.message, 1);
    } else {
      fail(`unexpected error (this is a bug, please report it):\n${err instanceof Error ? err.stack : String(err)}`, 1);
    }
  }
  // Output through the process streams may still be queued (a pipe): wait for it, so it is never cut.
  if (streamsUsed()) process.stdout.write('', () => process.stderr.write('', () => process.exit()));
  else process.exit();
}

void main();
