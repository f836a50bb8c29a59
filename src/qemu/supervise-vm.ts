/**
 * A prepared VM's qemu, run as our child until it ends (the foreground `start`). Whatever way qemu ends,
 * the VM's leases are released and its run files removed.
 */
import { UncloudError } from '../core/errors.js';
import type { Owner } from '../store/store.js';
import type { LaunchDeps, PreparedVm } from './prepare-vm.js';
import { exitCodeOf, forgetFailedStart, notStarted, openGate, qemuSaid, recordQemu, rememberIdentity, spawnGated, spawnOrGiveBack } from './qemu-process.js';
import { type HeldSignals, holdSignals, STOP_SIGNALS } from './held-signals.js';
import { waitForQmp } from './qmp.js';
import { giveBackAfterFailure, giveBackVm } from './reconcile.js';
import { DEFAULT_STOP_TIMEOUT_S, stopVm } from './stop.js';

/**
 * Run qemu as our child until it ends. SIGINT/SIGTERM/SIGHUP to the launcher stop the VM gracefully
 * (ACPI power button, then quit, then kill); a second signal kills qemu at once.
 * Returns 0 for a clean end; a failure throws with qemu's exit code (128 + n when killed by signal n).
 */
export async function superviseVm(vm: PreparedVm, deps: LaunchDeps, heldSignals?: HeldSignals): Promise<number> {
  const file = vm.argv[0]!;
  let stopping = 0;
  let qemu: Owner | undefined;
  const signals = STOP_SIGNALS;
  // A signal that came while the VM was prepared (the caller held them): qemu is not started at all, and what
  // the VM took goes back.
  // They stay held until this function's own handlers are in place (after the spawn): a signal in between is
  // not lost, nor does it end the launcher with qemu at its gate.
  const held = heldSignals ?? holdSignals();
  const early = held.signal;
  if (early) {
    vm.gate?.child.kill('SIGKILL');
    held.release();
    deps.note(`${early}: stopping VM ${vm.spec.name} before qemu started`);
    await giveBackVm(deps.store, deps.host, vm);
    return 0;
  }
  // Until qemu is up its stderr is held back: a qemu that fails to start has it all in the error, once.
  let up = false;
  let heldBack = '';
  const showStderr = deps.qemuStderr ?? ((chunk: string) => void process.stderr.write(chunk));
  // exec.sh sets the umask and execs qemu once past its gate: the child's pid is qemu's, as under a unit.
  const { child: qemuChild } = await spawnOrGiveBack(vm, deps, () => ({
    child: spawnGated(vm, (text) => {
      if (up) showStderr(text);
      else heldBack += text;
    }),
  })).catch((err: unknown) => {
    held.release();
    throw err;
  });
  const { child } = qemuChild;
  let gateOpen = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    stopping += 1;
    if (!gateOpen) {
      // qemu waits at its gate and never ran: it is ended, and the launcher gives everything back.
      deps.note(`${sig}: stopping VM ${vm.spec.name} before qemu started`);
      child.kill('SIGKILL');
      return;
    }
    if (stopping > 1 || !qemu) {
      child.kill('SIGKILL');
      return;
    }
    deps.note(`${sig}: stopping VM ${vm.spec.name}`);
    void stopVm(
      { name: vm.spec.name, qmpSocket: vm.spec.qmpSocket, qemu },
      { timeoutMs: (deps.stopTimeoutS ?? DEFAULT_STOP_TIMEOUT_S) * 1000, force: false, progress: deps.note },
    ).catch((err) => {
      deps.note(`stopping VM ${vm.spec.name} failed: ${(err as Error).message}; killing qemu`);
      child.kill('SIGKILL');
    });
  };
  for (const s of signals) process.on(s, onSignal);
  held.release();
  // One that came during the spawn: qemu is still at its gate.
  const duringSpawn = held.signal;
  if (duringSpawn) onSignal(duringSpawn);
  let exited = false;
  void qemuChild.exited.then(() => (exited = true));
  let ready = Promise.resolve();
  let failure = false;
  try {
    try {
      // A stop signal may come at any await here; onSignal has then killed qemu at its gate.
      if (stopping === 0) qemu = await recordQemu(vm, deps, child.pid);
      if (stopping === 0) await rememberIdentity(vm, deps);
      if (stopping === 0) {
        openGate(child.stdio[3] as unknown as NodeJS.WritableStream);
        gateOpen = true;
      }
    } catch (err) {
      child.kill('SIGKILL');
      // Recording a qemu that a stop signal has just killed fails: the start was stopped, not failed.
      if (child.pid !== undefined && stopping === 0) throw err;
    }
    // Looked for once qemu may run (the first try loads the socket code: not before qemu is exec'd).
    if (gateOpen) {
      ready = waitForQmp(vm.spec.qmpSocket, () => exited, 120_000).then(async (r) => {
        if (r !== 'ready') return;
        up = true;
        if (heldBack) showStderr(heldBack);
      });
    }
    // qemu's exit ends the VM even if something it started still holds its stderr open (cut after 1 s).
    const result = await qemuChild.ended(1000);
    await ready;
    if (result.exitCode !== undefined) {
      if (result.exitCode !== 0) {
        if (!up) await forgetFailedStart(vm, deps);
        const what = up ? `qemu exited with code ${result.exitCode}` : `qemu failed to start (exit code ${result.exitCode})`;
        throw new UncloudError('QEMU_FAILED', `${what}${up ? '' : qemuSaid(result.stderr)}`, result.exitCode);
      }
      return 0;
    }
    if (result.signal) {
      if (stopping > 0 && (result.signal === 'SIGTERM' || !gateOpen)) return 0;
      throw new UncloudError('QEMU_KILLED', `qemu was killed by ${result.signal}`, exitCodeOf(result.signal));
    }
    throw notStarted(file, result);
  } catch (err) {
    failure = true;
    throw err;
  } finally {
    for (const s of signals) process.off(s, onSignal);
    // A qemu that never got past its gate never ran (a signal came while it was recorded): the VM is
    // remembered as before, as after any start that failed.
    if (!gateOpen) await forgetFailedStart(vm, deps);
    // qemu has ended: what it held goes back (its ifdown scripts ran unless it was killed). A store that will
    // not take it back is this run's error, unless it already has one.
    if (failure) await giveBackAfterFailure(deps.store, deps.host, vm, deps.note, gateOpen);
    else await giveBackVm(deps.store, deps.host, vm);
  }
}
