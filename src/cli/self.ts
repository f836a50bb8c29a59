/** How uncloud-vm calls itself later (unit hooks, detached VMs' ifdown): node + this CLI + the settings in force now. */
import { fileURLToPath } from 'node:url';
import type { Settings } from '../system/config.js';

/** The installed command (bin/uncloud-vm.cjs), found the same way from src/, dist/ and the one-file bundle. */
export const MAIN_JS = fileURLToPath(new URL('../../bin/uncloud-vm.cjs', import.meta.url));

export function selfCommand(settings: Settings): string[] {
  return [
    process.execPath,
    MAIN_JS,
    '--state-dir', settings.stateDir,
    '--run-dir', settings.runDir,
    '--prefix', settings.prefix,
    ...(settings.forcePrefix ? ['--force-prefix'] : []),
    '--store', settings.store,
  ];
}
