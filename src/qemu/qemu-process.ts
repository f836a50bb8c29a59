/**
 * The qemu process of a prepared VM, as supervise-vm.ts and run-detached.ts start it: exec.sh waiting at its
 * gate, qemu recorded as the owner of the leases before it may run, the VM remembered once qemu runs, and the
 * errors a failed start gives. Only src/qemu/ talks to qemu processes.
 * The foreground launcher spawns with node:child_process (spawnGated): until qemu is exec'd every
 * millisecond is the user's, and loading execa and making its first call cost ~25 ms of that. A detached start
 * spawns with execa (run-detached.ts), whose result and errors it uses while it waits for qemu's QMP.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { UncloudError } from '../core/errors.js';
import type { Owner } from '../store/store.js';
import { currentOwner } from '../system/proc.js';
import { writeRecord } from '../system/run-dir.js';
import type { LaunchDeps, PreparedVm } from './prepare-vm.js';
import { giveBackAfterFailure } from './reconcile.js';

export const loadExeca = () => import('execa');

/** How qemu ended: its exit code, or the signal that ended it, or (code, message) why it never ran. */
export interface QemuEnd {
  exitCode?: number;
  signal?: NodeJS.Signals;
  code?: string;
  message?: string;
  /** All it wrote on stderr. */
  stderr: string;
}

export interface GatedQemu {
  child: ChildProcess;
  /** The process ended (or never started). */
  exited: Promise<void>;
  /** It ended and its stderr is closed, or was cut drainMs after the end: how it ended. */
  ended: (drainMs: number) => Promise<QemuEnd>;
  /**
   * Its stderr, from now on and what it wrote before, appended to `log` (closed once it has ended) and passed
   * to onStderr.
   */
  attach: (log: number, onStderr: (text: string) => void) => void;
}

/**
 * The gate qemu waits at, in the shell the launcher spawns: "go" on fd 3 once the launcher has recorded this
 * process as the VM's qemu; if the launcher dies first, fd 3 closes and qemu never runs, so no qemu runs that
 * no lease names. Only then is exec.sh read (it need not exist when the gate is spawned): it execs qemu in
 * this same process, so the pid recorded is qemu's.
 */
const GATE_SH = 'read -r go <&3 || exit 75; [ "$go" = go ] || exit 75; exec 3<&-; . "$0"';

/** The argv of /bin/sh for a VM's qemu held at its gate. */
export const gatedShArgs = (execScript: string): string[] => ['-c', GATE_SH, execScript];

/**
 * qemu at its gate as the foreground launcher's child, its stderr held until attach(); killed if this process
 * exits first (the launcher's own stop paths end it in order before that). Spawned as soon as the VM is
 * claimed (prepareVm's `gate`), so its leases name it from their creation.
 */
export function spawnGate(execScript: string, console: boolean): GatedQemu {
  const child = spawn('/bin/sh', gatedShArgs(execScript), {
    stdio: [console ? 'inherit' : 'ignore', 'inherit', 'pipe', 'pipe'],
    // Off the terminal's process group, so Ctrl-C reaches the launcher, which stops the VM in order.
    detached: !console,
  });
  // The gate's pipe breaks when exec.sh ends before it is opened: that end is reported by 'exit'.
  child.stdio[3]?.on('error', () => undefined);
  let stderr = '';
  let log: number | undefined;
  let onStderr: (text: string) => void = () => undefined;
  let isClosed = false;
  const toLog = (text: string): void => {
    try {
      if (log !== undefined) writeSync(log, text);
    } catch {
      // a full disk loses log lines, not the VM
    }
  };
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr += text;
    if (log === undefined) return;
    toLog(text);
    onStderr(text);
  });
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let end: Omit<QemuEnd, 'stderr'> | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      end = code !== null ? { exitCode: code } : { signal: signal! };
      resolve();
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      end ??= { code: err.code, message: err.message };
      resolve();
    });
  });
  const closed = new Promise<void>((resolve) => {
    child.once('close', () => resolve());
    void exited.then(() => (child.pid === undefined ? resolve() : undefined));
  });
  void closed.then(() => {
    isClosed = true;
    process.off('exit', killOnExit);
    if (log !== undefined) closeSync(log);
  });
  return {
    child,
    exited,
    ended: async (drainMs) => {
      await exited;
      // qemu's end ends the VM even if something it started still holds its stderr open.
      const drain = setTimeout(() => child.stderr?.destroy(), drainMs);
      await closed;
      clearTimeout(drain);
      return { ...end!, stderr };
    },
    attach: (fd, fn) => {
      log = fd;
      onStderr = fn;
      if (stderr) {
        toLog(stderr);
        fn(stderr);
      }
      if (isClosed) closeSync(fd);
    },
  };
}

/**
 * The VM's qemu at its gate (the one prepareVm spawned, else spawned now), its stderr appended to the VM's
 * qemu log as it comes and passed to onStderr. A log that cannot be opened fails the start, and ends a gate
 * already spawned.
 */
export function spawnGated(vm: PreparedVm, onStderr: (text: string) => void): GatedQemu {
  let log: number;
  try {
    log = openQemuLog(vm);
  } catch (err) {
    vm.gate?.child.kill('SIGKILL');
    throw err;
  }
  let gate: GatedQemu;
  try {
    gate = vm.gate ?? spawnGate(vm.files.execScript, !!vm.spec.console);
  } catch (err) {
    closeSync(log);
    throw err;
  }
  gate.attach(log, onStderr);
  return gate;
}

/** The VM's qemu log, opened to append (qemu's stderr goes there); one that cannot be opened fails the start. */
export function openQemuLog(vm: PreparedVm): number {
  try {
    return openSync(vm.logs.qemu, 'a', 0o600);
  } catch (err) {
    throw new UncloudError('QEMU_FAILED', `qemu could not be started: cannot open its log: ${(err as Error).message}`);
  }
}

/** Remember a named VM's UUID and MACs once its qemu runs. A failure is a note: the VM runs. */
export async function rememberIdentity(vm: PreparedVm, deps: LaunchDeps): Promise<void> {
  if (!vm.identity) return;
  await deps.store.putIdentity({ ...vm.identity, updated: new Date().toISOString() }).catch((err: Error) => {
    deps.note(`VM ${vm.spec.name}: could not remember its UUID and MACs: ${err.message}`);
  });
}

/** qemu failed to start: the VM is remembered as before (a new name not at all). */
export async function forgetFailedStart(vm: PreparedVm, deps: LaunchDeps): Promise<void> {
  if (!vm.identity) return;
  const undo = vm.previousIdentity ? deps.store.putIdentity(vm.previousIdentity) : deps.store.deleteIdentity(vm.spec.name);
  await Promise.resolve(undo).catch(() => undefined);
}

export { exitCodeOf } from './held-signals.js';

/**
 * Record qemu as the owner of the VM's leases (beside the launcher) before it may run: exec.sh waits at
 * its gate (fd 3) until told "go", and ends if the launcher dies first. So no qemu ever runs that its
 * leases do not name.
 */
export async function recordQemu(vm: PreparedVm, deps: LaunchDeps, pid: number | undefined): Promise<Owner> {
  // Spawned at its gate by prepareVm: the leases named it when they were taken, and so does the record.
  if (vm.record.qemu && vm.record.qemu.pid === pid) return vm.record.qemu;
  const qemu = qemuOwner(pid);
  await deps.store.setOwners(
    vm.leases.map((l) => l.mac),
    vm.record.launcher ? [vm.record.launcher, qemu] : [qemu],
  );
  vm.record = { ...vm.record, qemu };
  writeRecord(vm.files, vm.record);
  return qemu;
}

/** The owner a spawned qemu (at its gate) is recorded as; one that ended at once fails the start. */
export function qemuOwner(pid: number | undefined): Owner {
  const qemu = pid === undefined ? null : currentOwner(pid);
  if (!qemu) throw new UncloudError('QEMU_FAILED', 'qemu could not be started: its process ended at once');
  return qemu;
}

export function openGate(gate: NodeJS.WritableStream | null | undefined): void {
  gate?.end('go\n');
}

/**
 * Spawn qemu; if even that fails (execa will not load, bad options), give back what the VM took.
 * The subprocess comes boxed: an execa subprocess is a thenable, and returning it bare would await qemu's exit.
 */
export async function spawnOrGiveBack<T>(vm: PreparedVm, deps: LaunchDeps, start: () => { child: T } | Promise<{ child: T }>): Promise<{ child: T }> {
  try {
    return await start();
  } catch (err) {
    await giveBackAfterFailure(deps.store, deps.host, vm, deps.note);
    throw err;
  }
}

export function qemuNotFound(file: string): UncloudError {
  return new UncloudError('QEMU_NOT_FOUND', `qemu binary '${file}' not found; install qemu-system-x86 or pass --qemu <path>`);
}

export function notStarted(file: string, result: { code?: string; shortMessage?: string; message?: string }): UncloudError {
  if (result.code === 'ENOENT') return qemuNotFound(file);
  return new UncloudError('QEMU_FAILED', `qemu could not be started: ${result.shortMessage ?? result.message}`);
}

/** qemu's whole stderr of a failed start, as the tail of an error message (its last 40 lines). */
export function qemuSaid(text: unknown): string {
  if (typeof text !== 'string' || text.trim() === '') return '';
  const lines = text.trimEnd().split('\n');
  const shown = lines.slice(-40).map((l) => `  ${l}`);
  return `; qemu said:\n${lines.length > 40 ? '  …\n' : ''}${shown.join('\n')}`;
}
