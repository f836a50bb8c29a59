/** How a command's definition calls what it does: global flags → settings → a context; the exit code back. */
import type { Command } from 'commander';
import type { Overrides } from '../../../system/config.js';
import { type Context, makeContext } from '../../context.js';

export interface ProgramResult {
  exitCode: number;
}

/** What a command does, given commander's arguments and options. Returns the exit code. */
export type Handler = (args: string[], opts: Record<string, unknown>, ctx: Context) => Promise<number>;

/** Turns a Handler into a commander action. */
export type Action = (run: Handler) => (...args: unknown[]) => Promise<void>;

/** A command module's definition: adds its verb(s) with their flags, help texts and actions to the program. */
export type Define = (program: Command, action: Action) => void;

export function makeAction(result: ProgramResult): Action {
  return (run) =>
    async (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      const globals = cmd.optsWithGlobals() as Record<string, unknown>;
      const flags: Overrides = {};
      if (globals.config !== undefined) flags.config = globals.config as string;
      if (globals.stateDir !== undefined) flags.stateDir = globals.stateDir as string;
      if (globals.runDir !== undefined) flags.runDir = globals.runDir as string;
      if (globals.prefix !== undefined) flags.prefix = globals.prefix as string;
      if (globals.forcePrefix) flags.forcePrefix = true;
      if (globals.store !== undefined) flags.store = globals.store as string;
      const ctx = makeContext(flags);
      try {
        result.exitCode = await run(cmd.args, cmd.opts(), ctx);
      } finally {
        await ctx.close();
      }
    };
}
