/**
 * The qemu process of a prepared VM, as supervise-vm.ts and run-detached.ts start it: execa loaded ahead,
 * qemu recorded as the owner of the leases before it may run, the VM remembered once qemu runs, and the
 * errors a failed start gives. Only src/qemu/ talks to qemu processes.
 */
import { UncloudError } from '../core/errors.js';
import type { Owner } from '../store/store.js';
import { currentOwner } from '../system/proc.js';
import { writeRecord } from '../system/run-dir.js';
import type { LaunchDeps, PreparedVm } from './prepare-vm.js';
import { giveBackAfterFailure } from './reconcile.js';

/** execa is the costliest import of a start (~120 ms on Node 20): load it while the VM is being prepared. */
let execaLoading: Promise<typeof import('execa')> | undefined;
export const loadExeca = () => (execaLoading ??= import('execa'));

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
  const qemu = pid === undefined ? null : currentOwner(pid);
  if (!qemu) throw new UncloudError('QEMU_FAILED', 'qemu could not be started: its process ended at once');
  await deps.store.setOwners(
    vm.leases.map((l) => l.mac),
    vm.record.launcher ? [vm.record.launcher, qemu] : [qemu],
  );
  vm.record = { ...vm.record, qemu };
  writeRecord(vm.files, vm.record);
  return qemu;
}

export function openGate(gate: NodeJS.WritableStream | null | undefined): void {
  gate?.end('go\n');
}

/**
 * Spawn qemu; if even that fails (execa will not load, bad options), give back what the VM took.
 * The subprocess comes boxed: it is a thenable, and returning it bare would await qemu's exit.
 */
export async function spawnOrGiveBack<T>(vm: PreparedVm, deps: LaunchDeps, spawn: (execa: typeof import('execa').execa) => T): Promise<{ child: T }> {
  try {
    return { child: spawn((await loadExeca()).execa) };
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
