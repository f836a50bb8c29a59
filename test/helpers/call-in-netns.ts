/** Call a function of a built module (dist/) in a test's network namespace, from a node of its own. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './cli.js';
import type { Netns } from './netns.js';

const run = promisify(execFile);
// Each call is a node start: without the machine's extra CA bundle it starts several times faster.
const { NODE_EXTRA_CA_CERTS: _ca, ...childEnv } = process.env;

export type CallResult<T> = { ok: T } | { error: { code: string; message: string } };

/** `module` relative to dist/ (e.g. system/network.js); args go as JSON, the result comes back as JSON. */
export async function callInNetns<T>(ns: Netns, module: string, fn: string, ...args: unknown[]): Promise<CallResult<T>> {
  const { stdout } = await run('ip', ['netns', 'exec', ns.name, process.execPath, join(ROOT, 'test/fixtures/call-module.mjs'), module, fn, JSON.stringify(args)], { env: childEnv });
  return JSON.parse(stdout) as CallResult<T>;
}

/** Run an ES module's source in the namespace; its stdout. */
export async function runInNetns(ns: Netns, source: string): Promise<string> {
  return (await run('ip', ['netns', 'exec', ns.name, process.execPath, '--input-type=module', '-e', source], { env: childEnv })).stdout;
}
