/**
 * A prepared VM's qemu, run as our child until it ends (the foreground `start`). Whatever way qemu ends,
 * the VM's leases are released and its run files removed.
 */
import { UncloudError } from '../core/errors.js';
import type { Owner } from '../store/store.js';
import type { LaunchDeps, PreparedVm } from './prepare-vm.js';
import { exitCodeOf, forgetFailedStart, loadExeca, notStarted, openGate, qemuSaid, recordQemu, rememberIdentity, spawnOrGiveBack } from './qemu-process.js';
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
  // A signal that comes while the VM was prepared (the caller held them) or execa still loads: qemu is not
  // started at all, and what the VM took goes back.
  const held = heldSignals ?? holdSignals();
  try {
    await loadExeca().catch(() => undefined);
  } finally {
    held.release();
  }
  const early = held.signal;
  if (early) {
    deps.note(`${early}: stopping VM ${vm.spec.name} before qemu started`);
    await giveBackVm(deps.store, deps.host, vm);
    return 0;
  }
  // exec.sh sets the umask and execs qemu once past its gate: the child's pid is qemu's, as under a unit.
  const { child } = await spawnOrGiveBack(vm, deps, (execa) =>
    execa('/bin/sh', [vm.files.execScript, '--gate'], {
      reject: false,
      stdio: [vm.spec.console ? 'inherit' : 'ignore', 'inherit', ['pipe', { file: vm.logs.qemu, append: true }], 'pipe'],
      // Off the terminal's process group, so Ctrl-C reaches the launcher, which stops the VM in order.
      detached: !vm.spec.console,
      cleanup: true,
    }),
  );
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
  // Until qemu is up its stderr is held back: a qemu that fails to start has it all in the error, once.
  let exited = false;
  child.once('exit', () => (exited = true));
  let up = false;
  let heldBack = '';
  const showStderr = deps.qemuStderr ?? ((chunk: string) => void process.stderr.write(chunk));
  child.stderr?.on('data', (d: Buffer) => {
    if (up) showStderr(d.toString());
    else heldBack += d.toString();
  });
  const ready = waitForQmp(vm.spec.qmpSocket, () => exited, 120_000).then(async (r) => {
    if (r !== 'ready') return;
    up = true;
    if (heldBack) showStderr(heldBack);
  });
  let failure = false;
  try {
    try {
      qemu = await recordQemu(vm, deps, child.pid);
      await rememberIdentity(vm, deps);
      if (stopping === 0) {
        openGate(child.stdio[3] as unknown as NodeJS.WritableStream);
        gateOpen = true;
      }
    } catch (err) {
      child.kill('SIGKILL');
      if (child.pid !== undefined) throw err;
    }
    // qemu's exit ends the VM even if something it started still holds its stderr open.
    // (A qemu that never started has no exit event; the subprocess promise settles instead.)
    await Promise.race([new Promise((resolve) => child.once('exit', resolve)), child]);
    const drain = setTimeout(() => child.stderr?.destroy(), 1000);
    const result = await child;
    clearTimeout(drain);
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
    throw notStarted(file, result as { code?: string; shortMessage?: string; message?: string });
  } catch (err) {
    failure = true;
    throw err;
  } finally {
    for (const s of signals) process.off(s, onSignal);
    // qemu has ended: what it held goes back (its ifdown scripts ran unless it was killed). A store that will
    // not take it back is this run's error, unless it already has one.
    if (failure) await giveBackAfterFailure(deps.store, deps.host, vm, deps.note);
    else await giveBackVm(deps.store, deps.host, vm);
  }
}
