/** A prepared VM's qemu, started in the background (`start --detach`). */
import { closeSync } from 'node:fs';
import { UncloudError } from '../core/errors.js';
import type { Owner } from '../store/store.js';
import { readFrom } from '../system/vm-logs.js';
import { interruptedStart, type LaunchDeps, type PreparedVm } from './prepare-vm.js';
import { forgetFailedStart, gatedShArgs, loadExeca, notStarted, openGate, openQemuLog, qemuSaid, recordQemu, rememberIdentity, spawnOrGiveBack } from './qemu-process.js';
import { waitForQmp } from './qmp.js';
import { giveBackAfterFailure } from './reconcile.js';

/**
 * Start qemu in the background and return once its QMP socket answers. The leases pass to qemu
 * (owner = qemu's pid), the ifdown scripts give them back when the VM ends, and gc after a SIGKILL.
 * A stop signal (`interrupted`, held back by the caller) before qemu answers ends the start: qemu is killed and
 * everything is given back, as when a foreground start is stopped.
 */
export async function runDetached(vm: PreparedVm, deps: LaunchDeps, readyTimeoutMs = 30_000, interrupted: () => NodeJS.Signals | undefined = () => undefined): Promise<Owner> {
  const file = vm.argv[0]!;
  const { child } = await spawnOrGiveBack(vm, deps, async () => {
    const { execa } = await loadExeca();
    // qemu's stderr is the log file itself: execa's { file } target is a pipe this process writes to the file,
    // and what qemu said after this process had gone was lost.
    const log = openQemuLog(vm);
    try {
      return {
        child: execa('/bin/sh', gatedShArgs(vm.files.execScript), {
          reject: false,
          // A descriptor number goes to spawn as it is (execa's types name only 1 to 9 for stderr).
          stdio: ['ignore', 'ignore', log as 2, 'pipe'],
          detached: true,
          cleanup: false,
        }),
      };
    } finally {
      closeSync(log);
    }
  });
  try {
    if (child.pid === undefined) throw notStarted(file, (await child) as { code?: string });
    const qemu = await recordQemu(vm, deps, child.pid);
    await rememberIdentity(vm, deps);
    openGate(child.stdio[3] as unknown as NodeJS.WritableStream);
    let exited = false;
    void child.then(() => (exited = true));
    const ready = await waitForQmp(vm.spec.qmpSocket, () => exited || interrupted() !== undefined, readyTimeoutMs);
    const sig = interrupted();
    if (ready !== 'ready' || sig) await forgetFailedStart(vm, deps);
    if (sig) throw interruptedStart(vm.spec.name, sig);
    if (ready === 'gone') {
      const r = await child;
      if (r.exitCode === undefined && !r.signal) throw notStarted(file, r as { code?: string });
      const how = r.exitCode !== undefined ? `exit code ${r.exitCode}` : r.signal;
      throw new UncloudError('QEMU_FAILED', `qemu failed to start (${how})${qemuSaid(readFrom(vm.logs.qemu, vm.qemuLogStart))}`, 1);
    }
    if (ready === 'timeout') throw new UncloudError('QEMU_TIMEOUT', `qemu's QMP socket did not answer within ${readyTimeoutMs / 1000} s`);
    child.unref();
    return qemu;
  } catch (err) {
    child.kill('SIGKILL');
    await Promise.resolve(child).catch(() => undefined);
    await giveBackAfterFailure(deps.store, deps.host, vm, deps.note);
    throw err;
  }
}
