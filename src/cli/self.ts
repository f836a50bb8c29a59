/**
 * How uncloud-vm calls itself later (unit hooks, detached VMs' ifdown, the agent unit): node + this CLI +
 * the settings in force now. "This CLI" is the `uncloud-vm` on PATH when that is this very program (an
 * installed or linked copy): units then name the installed path, which stays valid when a checkout moves
 * or is rebuilt elsewhere. Otherwise it is this checkout's bin/uncloud-vm.cjs, and selfNote says so.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Settings } from '../system/config.js';
import { findExecutable } from '../system/host.js';

/** The installed command (bin/uncloud-vm.cjs), found the same way from src/, dist/ and the one-file bundle. */
export const MAIN_JS = fileURLToPath(new URL('../../bin/uncloud-vm.cjs', import.meta.url));

function realpath(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

/** The `uncloud-vm` on PATH if it is this program, else undefined. */
export function installedSelf(path = process.env.PATH ?? ''): string | undefined {
  const found = findExecutable('uncloud-vm', path);
  return found !== null && realpath(found) === realpath(MAIN_JS) ? found : undefined;
}

/** The program as units and scripts run it. */
export function selfProgram(): string {
  return installedSelf() ?? MAIN_JS;
}

/** Why a unit names a checkout's file, when it does (for the operator, on stderr). */
export function selfNote(): string | undefined {
  if (installedSelf() !== undefined) return undefined;
  const found = findExecutable('uncloud-vm', process.env.PATH ?? '');
  const why = found === null ? 'no uncloud-vm is on PATH' : `the uncloud-vm on PATH (${found}) is another copy`;
  return `note: ${why}, so the unit runs ${MAIN_JS}; install this one (npm run build && npm install -g "$(npm pack --silent)") for a path that outlives the checkout`;
}

export function selfCommand(settings: Settings): string[] {
  return [
    process.execPath,
    selfProgram(),
    ...(settings.config !== undefined ? ['--config', settings.config] : []),
    '--state-dir', settings.stateDir,
    '--run-dir', settings.runDir,
    '--prefix', settings.prefix,
    ...(settings.forcePrefix ? ['--force-prefix'] : []),
    '--store', settings.store,
  ];
}
