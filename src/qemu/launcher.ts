/**
 * Prepare a VM (run dir, leases, ifup/ifdown/exec scripts, argv) and run it: supervised in the foreground,
 * or detached. Whatever way qemu ends, the VM's leases are released and its run files removed.
 * This module, stop.ts and qmp.ts are the only ones that talk to qemu processes.
 */
import { readFileSync } from 'node:fs';
import { UncloudError } from '../core/errors.js';
import type { Pool } from '../core/mac.js';
import type { BridgeFacts } from '../core/nic-guard-rules.js';
import { buildQemuArgv, type VmSpec } from '../core/qemu-argv.js';
import { shellQuote } from '../core/quote.js';
import { specFor, type VmPlan, type VmRunFiles, vmRunFiles } from '../core/vm-spec.js';
import type { Lease, LeaseRequest, Owner, Store } from '../store/store.js';
import { findExecutable } from '../system/host.js';
import { ownerOf } from '../system/proc.js';
import { claimRunDir, readRecord, removeRunDir, type VmRecord, writeRecord, writeScript } from '../system/run-dir.js';
import { nicAddressesOf } from '../system/nic-addresses.js';
import { removeNicGuard } from '../system/nic-guard.js';
import { renderIfdown, renderIfup } from '../system/nic-scripts.js';
import { loadTemplate, render } from '../system/templates.js';
import { QmpClient } from './qmp.js';
import { DEFAULT_STOP_TIMEOUT_S, stopVm } from './stop.js';

export interface LaunchDeps {
  store: Store;
  pool: Pool;
  runDir: string;
  bridgeExists: (name: string) => boolean;
  /** Progress and notes for the user (stderr). */
  note: (msg: string) => void;
  stopTimeoutS?: number;
  /** A bridge's network (IPv6 prefixes, IPv6-only) for the NIC guard; default: the bridge's own /64s. */
  network?: (bridge: string) => BridgeFacts;
}

export interface PreparedVm {
  spec: VmSpec;
  argv: string[];
  files: VmRunFiles;
  leases: Lease[];
  record: VmRecord;
}

export interface PrepareOptions {
  owners: Owner[];
  /** A command (argv) each ifdown script runs with the NIC's MAC appended, to give it back (detached VMs). */
  releaseOnDown?: string[];
}

/** execa is the costliest import of a start (~120 ms on Node 20): load it while the VM is being prepared. */
let execaLoading: Promise<typeof import('execa')> | undefined;
const loadExeca = () => (execaLoading ??= import('execa'));

/** Check bridges, claim the run dir, lease the MACs and render the scripts. Gives everything back on failure. */
export async function prepareVm(plan: VmPlan, deps: LaunchDeps, opts: PrepareOptions): Promise<PreparedVm> {
  void loadExeca().catch(() => undefined);
  // Everything we and qemu create (scripts, pidfile, QMP socket, serial log) is for our eyes only.
  process.umask(0o077);
  if (!findExecutable(plan.qemu)) throw qemuNotFound(plan.qemu);
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
    const known = plan.named ? await deps.store.getIdentity(plan.name) : null;
    const requests: LeaseRequest[] = plan.nics.map((nic) => {
      const req: LeaseRequest = { vm: { uuid: plan.uuid, name: plan.name }, nic: nic.index, owners: opts.owners };
      if (nic.mac !== undefined) req.mac = nic.mac;
      else if (known?.macs[nic.index] !== undefined) req.prefer = known.macs[nic.index]!;
      return req;
    });
    leases = await deps.store.allocate(deps.pool, requests);
    requests.forEach((req, i) => {
      if (req.prefer !== undefined && leases[i]!.mac !== req.prefer) {
        deps.note(`VM ${plan.name}: nic${req.nic}'s previous MAC ${req.prefer} is held by another VM; using ${leases[i]!.mac}`);
      }
    });
    if (plan.named) {
      await deps.store.putIdentity({
        version: 1,
        name: plan.name,
        uuid: plan.uuid,
        macs: leases.map((l) => l.mac),
        updated: new Date().toISOString(),
      });
    }
    const spec = specFor(
      plan,
      leases.map((l) => l.mac),
      files,
    );
    const argv = buildQemuArgv(spec);
    const addresses = nicAddressesOf(plan, spec, deps.network);
    for (const nic of spec.nics) {
      const input = { vm: spec.name, index: nic.index, iface: nic.tap, bridge: nic.bridge, mac: nic.mac, addresses: addresses[nic.index]! };
      const afterDown = opts.releaseOnDown ? `${[...opts.releaseOnDown, nic.mac].map(shellQuote).join(' ')} >/dev/null 2>&1 || true` : ':';
      // A guard a killed VM of the same tap left behind would add its addresses to this one's.
      if (input.addresses.allowed) removeNicGuard(nic.tap);
      writeScript(nic.ifup, renderIfup(input));
      writeScript(nic.ifdown, renderIfdown(input, afterDown));
    }
    writeScript(files.execScript, render(loadTemplate('exec.sh'), { vm: spec.name }, shellQuote, { command: argv.map(shellQuote).join(' ') }));
    const record: VmRecord = {
      version: 1,
      name: spec.name,
      uuid: spec.uuid,
      launcher: opts.owners[0] ?? null,
      qemu: null,
      nics: spec.nics.map(({ index, mac, tap, bridge }) => ({ index, mac, tap, bridge, addresses: addresses[index]! })),
      started: new Date().toISOString(),
      qmpSocket: spec.qmpSocket,
      serialLog: spec.serialLog,
    };
    writeRecord(files, record);
    return { spec, argv, files, leases, record };
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

/** Give back everything a VM holds, found by its run record (or, without one, its remembered identity). */
export async function releaseVm(store: Store, runDir: string, name: string): Promise<Lease[]> {
  const files = vmRunFiles(runDir, name);
  const uuid = readRecord(files.record)?.uuid ?? (await store.getIdentity(name))?.uuid;
  const held = (await store.list()).filter((l) => l.vm && (uuid !== undefined ? l.vm.uuid === uuid : l.vm.name === name));
  for (const l of held) await store.release(l.mac, l.vm!.uuid ?? l.vm!.name);
  removeRunDir(files);
  return held;
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15 };

/** Record qemu as an owner of the VM's leases, so they stay held while qemu runs without us. */
async function adoptQemu(vm: PreparedVm, deps: LaunchDeps, qemu: Owner, keepLauncher: boolean): Promise<VmRecord> {
  const owners = keepLauncher && vm.record.launcher ? [vm.record.launcher, qemu] : [qemu];
  await deps.store.setOwners(
    vm.leases.map((l) => l.mac),
    owners,
  );
  const record = { ...vm.record, qemu, launcher: keepLauncher ? vm.record.launcher : null };
  writeRecord(vm.files, record);
  return record;
}

/**
 * Spawn qemu; if even that fails (execa will not load, bad options), give back what the VM took.
 * The subprocess comes boxed: it is a thenable, and returning it bare would await qemu's exit.
 */
async function spawnOrGiveBack<T>(vm: PreparedVm, deps: LaunchDeps, spawn: (execa: typeof import('execa').execa) => T): Promise<{ child: T }> {
  try {
    return { child: spawn((await loadExeca()).execa) };
  } catch (err) {
    await giveBack(deps.store, vm.spec.uuid, vm.leases, vm.files);
    throw err;
  }
}

/**
 * Run qemu as our child until it ends. SIGINT/SIGTERM/SIGHUP to the launcher stop the VM gracefully
 * (ACPI power button, then quit, then kill); a second signal kills qemu at once.
 * Returns 0 for a clean end; a failure throws with qemu's exit code (128 + n when killed by signal n).
 */
export async function superviseVm(vm: PreparedVm, deps: LaunchDeps): Promise<number> {
  const file = vm.argv[0]!;
  let stopping = 0;
  let qemu: Owner | undefined;
  // exec.sh sets the umask and execs qemu: the child's pid is qemu's, as under a unit.
  const { child } = await spawnOrGiveBack(vm, deps, (execa) =>
    execa('/bin/sh', [vm.files.execScript], {
      reject: false,
      stdin: vm.spec.console ? 'inherit' : 'ignore',
      stdout: 'inherit',
      stderr: ['pipe', 'inherit'],
      // Off the terminal's process group, so Ctrl-C reaches the launcher, which stops the VM in order.
      detached: !vm.spec.console,
      cleanup: true,
    }),
  );
  const onSignal = (sig: NodeJS.Signals): void => {
    stopping += 1;
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
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  try {
    if (child.pid !== undefined) {
      try {
        qemu = ownerOf(child.pid);
        await adoptQemu(vm, deps, qemu, true);
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
    throw notStarted(file, result as { code?: string; shortMessage?: string; message?: string });
  } finally {
    for (const s of signals) process.off(s, onSignal);
    await giveBack(deps.store, vm.spec.uuid, vm.leases, vm.files);
  }
}

function qemuNotFound(file: string): UncloudError {
  return new UncloudError('QEMU_NOT_FOUND', `qemu binary '${file}' not found; install qemu-system-x86 or pass --qemu <path>`);
}

function notStarted(file: string, result: { code?: string; shortMessage?: string; message?: string }): UncloudError {
  if (result.code === 'ENOENT') return qemuNotFound(file);
  return new UncloudError('QEMU_FAILED', `qemu could not be started: ${result.shortMessage ?? result.message}`);
}

/**
 * Start qemu in the background and return once its QMP socket answers. The leases pass to qemu
 * (owner = qemu's pid), the ifdown scripts give them back when the VM ends, and gc after a SIGKILL.
 */
export async function runDetached(vm: PreparedVm, deps: LaunchDeps, readyTimeoutMs = 30_000): Promise<Owner> {
  const file = vm.argv[0]!;
  const stderrPath = `${vm.files.dir}/qemu.stderr`;
  const { child } = await spawnOrGiveBack(vm, deps, (execa) =>
    execa('/bin/sh', [vm.files.execScript], {
      reject: false,
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: { file: stderrPath },
      detached: true,
      cleanup: false,
    }),
  );
  try {
    if (child.pid === undefined) throw notStarted(file, (await child) as { code?: string });
    const qemu = ownerOf(child.pid);
    let exited = false;
    void child.then(() => (exited = true));
    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (exited) {
        const r = await child;
        const err = readStderr(stderrPath);
        if (r.exitCode === undefined && !r.signal) throw notStarted(file, r as { code?: string });
        throw new UncloudError('QEMU_FAILED', `qemu exited at start with ${r.exitCode ?? r.signal}${lastLine(err)}`, 1);
      }
      try {
        const qmp = await QmpClient.connect(vm.spec.qmpSocket, 2000);
        qmp.close();
        break;
      } catch {
        if (Date.now() > deadline) throw new UncloudError('QEMU_TIMEOUT', `qemu's QMP socket did not answer within ${readyTimeoutMs / 1000} s`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await adoptQemu(vm, deps, qemu, false);
    child.unref();
    return qemu;
  } catch (err) {
    child.kill('SIGKILL');
    await giveBack(deps.store, vm.spec.uuid, vm.leases, vm.files);
    throw err;
  }
}

function readStderr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function lastLine(text: unknown): string {
  if (typeof text !== 'string') return '';
  const line = text.trim().split('\n').pop()?.trim();
  return line ? `: ${line}` : '';
}
