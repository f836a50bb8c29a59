/** How uncloud-vm calls itself later (unit hooks, detached VMs' ifdown): node + this CLI + the settings in force now. */
import { fileURLToPath } from 'node:url';
import type { Settings } from '../system/config.js';

export const MAIN_JS = fileURLToPath(new URL('./main.js', import.meta.url));

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
