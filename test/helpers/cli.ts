/** Spawn the built CLI the way a user runs it, in a temp state/run dir, optionally inside a network namespace. */
import type { spawn } from 'node:child_process';
import { runCli } from '../../scripts/lib/cluster.mjs';
export { BIN } from '../../scripts/lib/cluster.mjs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
export const FAKE_QEMU = join(ROOT, 'test/fixtures/fake-qemu');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Sandbox {
  stateDir: string;
  runDir: string;
  env: NodeJS.ProcessEnv;
  cleanup: () => void;
}

/** A private state dir and run dir, and an env that points the CLI at them (and at no config file). */
export function sandbox(extraEnv: NodeJS.ProcessEnv = {}): Sandbox {
  const base = mkdtempSync(join(tmpdir(), 'uncloud-vm-test-'));
  const stateDir = join(base, 'state');
  const runDir = join(base, 'run');
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: base,
    UNCLOUD_VM_STATE_DIR: stateDir,
    UNCLOUD_VM_RUN_DIR: runDir,
    UNCLOUD_VM_CONFIG: join(ROOT, 'test/fixtures/empty-config.json'),
    ...extraEnv,
  };
  return { stateDir, runDir, env, cleanup: () => rmSync(base, { recursive: true, force: true }) };
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  netns?: string;
  cwd?: string;
  /** Called with the child once it runs (to signal it, say). */
  onSpawn?: (child: ReturnType<typeof spawn>) => void;
}

/** The built CLI (scripts/lib/cluster.mjs runs it for the cluster tests and demo too). */
export function cli(args: string[], opts: RunOptions = {}): Promise<CliResult> {
  return runCli(args, opts);
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
