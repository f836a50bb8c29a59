/**
 * Prepare a VM (run dir, leases, ifup/ifdown scripts, argv) and supervise qemu in the foreground.
 * Whatever way qemu ends, the VM's leases are released and its run files removed.
 * This module and qmp.ts are the only ones that talk to qemu processes.
 */
import { execa } from 'execa';
import { UncloudError } from '../core/errors.js';
import { formatMac, parseMac, type Pool, tapMacFor } from '../core/mac.js';
import { buildQemuArgv, type VmSpec } from '../core/qemu-argv.js';
import { shellQuote } from '../core/quote.js';
import { specFor, type VmPlan, type VmRunFiles, vmRunFiles } from '../core/vm-spec.js';
import type { Lease, Owner, Store } from '../store/pool.js';
import { ownerOf } from '../system/proc.js';
import { claimRunDir, removeRunDir, type VmRecord, writeRecord, writeScript } from '../system/run-dir.js';
import { loadTemplate, render } from '../system/templates.js';

export interface LaunchDeps {
  store: Store;
  pool: Pool;
  runDir: string;
  bridgeExists: (name: string) => boolean;
  /** Progress and notes for the user (stderr). */
  note: (msg: string) => void;
}

export interface PreparedVm {
  spec: VmSpec;
  argv: string[];
  files: VmRunFiles;
  leases: Lease[];
  record: VmRecord;
}

/** Check bridges, claim the run dir, lease the MACs and render the scripts. Gives everything back on failure. */
export async function prepareVm(plan: VmPlan, deps: LaunchDeps, owners: Owner[]): Promise<PreparedVm> {
  // Everything we and qemu create (scripts, pidfile, QMP socket, serial log) is for root's eyes only.
  process.umask(0o077);
  for (const nic of plan.nics) {
    if (!deps.bridgeExists(nic.bridge)) {
      throw new UncloudError(
        'NO_BRIDGE',
        `bridge ${nic.bridge} does not exist; create it ('ip link add ${nic.bridge} type bridge && ip link set ${nic.bridge} up') or pass --nic bridge=<existing bridge>`,
      );
    }
  }
  const files = vmRunFiles(deps.runDir, plan.name);
  claimRunDir(deps.runDir, files, plan.name);
  let leases: Lease[] = [];
  try {
    leases = await deps.store.allocate(
      deps.pool,
      plan.nics.map((nic) => ({
        vm: { uuid: plan.uuid, name: plan.name },
        nic: nic.index,
        owners,
        ...(nic.mac !== undefined ? { mac: nic.mac } : {}),
      })),
    );
    const spec = specFor(
      plan,
      leases.map((l) => l.mac),
      files,
    );
    const ifup = loadTemplate('ifup.sh');
    const ifdown = loadTemplate('ifdown.sh');
    for (const nic of spec.nics) {
      const values = {
        vm: spec.name,
        index: String(nic.index),
        bridge: nic.bridge,
        tapMac: formatMac(tapMacFor(parseMac(nic.mac))),
      };
      writeScript(nic.ifup, render(ifup, values, shellQuote));
      writeScript(nic.ifdown, render(ifdown, values, shellQuote));
    }
    const record: VmRecord = {
      version: 1,
      name: spec.name,
      uuid: spec.uuid,
      launcher: owners[0] ?? null,
      qemu: null,
      nics: spec.nics.map(({ index, mac, tap, bridge }) => ({ index, mac, tap, bridge })),
      started: new Date().toISOString(),
      qmpSocket: spec.qmpSocket,
      serialLog: spec.serialLog,
    };
    writeRecord(files, record);
    return { spec, argv: buildQemuArgv(spec), files, leases, record };
  } catch (err) {
    await giveBack(deps.store, plan.uuid, leases, files);
    throw err;
  }
}

/** Release the VM's leases and remove its run dir. Never throws: it runs on every exit path. */
export async function giveBack(store: Store, uuid: string, leases: Lease[], files: VmRunFiles): Promise<void> {
  for (const lease of leases) {
    await store.release(lease.mac, uuid).catch(() => false);
  }
  removeRunDir(files);
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15, SIGABRT: 6 };

/**
 * Run qemu as our child until it ends. SIGINT/SIGTERM/SIGHUP to the launcher stop qemu first
 * (a second signal kills it). Returns qemu's exit code (128 + signal number when killed).
 */
export async function superviseVm(vm: PreparedVm, deps: LaunchDeps): Promise<number> {
  const [file, ...args] = vm.argv;
  let stopping = 0;
  const child = execa(file!, args, {
    reject: false,
    stdin: vm.spec.console ? 'inherit' : 'ignore',
    stdout: 'inherit',
    stderr: ['pipe', 'inherit'],
    // Off the terminal's process group, so Ctrl-C reaches the launcher, which stops qemu in order.
    detached: !vm.spec.console,
    cleanup: true,
  });
  const onSignal = (sig: NodeJS.Signals): void => {
    stopping += 1;
    if (stopping === 1) {
      deps.note(`${sig}: stopping VM ${vm.spec.name}`);
      child.kill('SIGTERM');
    } else {
      child.kill('SIGKILL');
    }
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  try {
    if (child.pid !== undefined) {
      try {
        const qemu = ownerOf(child.pid);
        await deps.store.setOwners(
          vm.leases.map((l) => l.mac),
          [...(vm.record.launcher ? [vm.record.launcher] : []), qemu],
        );
        writeRecord(vm.files, { ...vm.record, qemu });
      } catch {
        // qemu already ended; its exit is handled below.
      }
    }
    // qemu's exit ends the VM even if something it started still holds its stderr open.
    // (A qemu that never started has no exit event; the subprocess promise settles instead.)
    await Promise.race([new Promise((resolve) => child.once('exit', resolve)), child]);
    const drain = setTimeout(() => child.stderr?.destroy(), 1000);
    const result = await child;
    clearTimeout(drain);
    if (result.exitCode !== undefined) {
      if (result.exitCode !== 0) {
        throw new UncloudError('QEMU_FAILED', `qemu exited with code ${result.exitCode}${lastLine(result.stderr)}`, result.exitCode);
      }
      return 0;
    }
    if (result.signal) {
      if (stopping > 0 && result.signal === 'SIGTERM') return 0;
      throw new UncloudError('QEMU_KILLED', `qemu was killed by ${result.signal}`, 128 + (SIGNAL_NUMBERS[result.signal] ?? 0));
    }
    const code = (result as { code?: string }).code;
    if (code === 'ENOENT') {
      throw new UncloudError('QEMU_NOT_FOUND', `qemu binary '${file}' not found; install qemu-system-x86 or pass --qemu <path>`);
    }
    throw new UncloudError('QEMU_FAILED', `qemu could not be started: ${result.shortMessage ?? result.message}`);
  } finally {
    for (const s of signals) process.off(s, onSignal);
    await giveBack(deps.store, vm.spec.uuid, vm.leases, vm.files);
  }
}

function lastLine(text: unknown): string {
  if (typeof text !== 'string') return '';
  const line = text.trim().split('\n').pop()?.trim();
  return line ? `: ${line}` : '';
}
