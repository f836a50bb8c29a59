/**
 * Prepare a VM (run dir, leases, ifup/ifdown/exec scripts, argv) and run it: supervised in the foreground,
 * or detached. Whatever way qemu ends, the VM's leases are released and its run files removed.
 * This module, stop.ts and qmp.ts are the only ones that talk to qemu processes.
 */
import { constants as osConstants } from 'node:os';
import { UncloudError } from '../core/errors.js';
import type { Pool } from '../core/mac.js';
import type { BridgeConfig } from '../core/nic-guard-rules.js';
import { buildQemuArgv, type VmSpec } from '../core/qemu-argv.js';
import { shellQuote } from '../core/quote.js';
import { type VmLogFiles, vmLogFiles, type VmRunFiles, vmRunFiles } from '../core/vm-files.js';
import { specFor, type VmPlan } from '../core/vm-plan.js';
import { holderOf } from '../store/policy.js';
import type { Lease, LeaseRequest, Owner, Store, VmIdentity } from '../store/store.js';
import { findExecutable } from '../system/host.js';
import { nicAddressesOf } from '../system/nic-addresses.js';
import { renderIfdown, renderIfup } from '../system/nic-scripts.js';
import { currentOwner } from '../system/proc.js';
import { type VmRecord, writeRecord, writeScript } from '../system/run-dir.js';
import { claimVm } from '../system/vm-claim.js';
import { loadTemplate, render } from '../system/templates.js';
import { openVmLogs, readFrom } from '../system/vm-logs.js';
import { waitForQmp } from './qmp.js';
import { giveBackHeld, giveBackVm } from './reconcile.js';
import { DEFAULT_STOP_TIMEOUT_S, stopVm } from './stop.js';

export interface LaunchDeps {
  store: Store;
  pool: Pool;
  runDir: string;
  /** This host's name in leases. */
  host: string;
  /** Where the VM's logs are kept (core/vm-files.ts vmLogFiles). */
  stateDir: string;
  bridgeExists: (name: string) => boolean;
  /**
   * Make (or find) the networks the plan's NICs name and set their MTU (system/network.ts prepareNetworks).
   * Called once the VM is claimed, naming its bridges: a `network rm` (under the same lock) then refuses.
   * A network's devices are the host's, not the VM's: they stay when the VM ends.
   */
  ensureNetworks?: (plan: VmPlan) => void;
  /** Progress and notes for the user (stderr). */
  note: (msg: string) => void;
  stopTimeoutS?: number;
  /** Per bridge: its network's IPv6 /64s and IPv6-only, for the NIC guard (config "bridges"). */
  bridges?: Record<string, BridgeConfig>;
  /** Where qemu's stderr goes once qemu is up, in the foreground (default: our stderr). */
  qemuStderr?: (chunk: string) => void;
}

export interface PreparedVm {
  spec: VmSpec;
  argv: string[];
  files: VmRunFiles;
  logs: VmLogFiles;
  /** Where this start's part of qemu's stderr log begins. */
  qemuLogStart: number;
  leases: Lease[];
  record: VmRecord;
  /** What a named VM is remembered as once qemu is up (a start that fails changes nothing). */
  identity: VmIdentity | null;
  /** What it was remembered as before this start: put back if qemu fails to start. */
  previousIdentity: VmIdentity | null;
}

export interface PrepareOptions {
  /** The process preparing the VM: owns its leases until qemu is recorded. */
  launcher: Owner;
  /** 'unit': systemd runs qemu later; the leases are held (no owner) until `hook adopt` names qemu. */
  managedBy: VmRecord['managedBy'];
  /** A command (argv) each ifdown script runs with the NIC's MAC appended, to give it back (detached VMs). */
  releaseOnDown?: string[];
}

/** execa is the costliest import of a start (~120 ms on Node 20): load it while the VM is being prepared. */
let execaLoading: Promise<typeof import('execa')> | undefined;
const loadExeca = () => (execaLoading ??= import('execa'));

function checkBridges(nics: VmPlan['nics'], deps: LaunchDeps): void {
  for (const nic of nics) {
    if (!deps.bridgeExists(nic.bridge)) {
      throw new UncloudError(
        'NO_BRIDGE',
        `bridge ${nic.bridge} does not exist; create it ('ip link add ${nic.bridge} type bridge && ip link set ${nic.bridge} up') or pass --nic bridge=<existing bridge>`,
      );
    }
  }
}

/**
 * Check bridges, claim the VM (run dir, tap names), lease the MACs and render the scripts.
 * Gives everything back on failure.
 */
export async function prepareVm(plan: VmPlan, deps: LaunchDeps, opts: PrepareOptions): Promise<PreparedVm> {
  void loadExeca().catch(() => undefined);
  if (!findExecutable(plan.qemu)) throw qemuNotFound(plan.qemu);
  // A network's bridge is made sure of after the claim (ensureNetworks); any other must exist already.
  checkBridges(plan.nics.filter((n) => n.network === undefined || !deps.ensureNetworks), deps);
  const files = vmRunFiles(deps.runDir, plan.name);
  const logs = vmLogFiles(deps.stateDir, plan.name);
  const { record: claimed, dead, macsInUse: usedHere } = await claimVm(deps.runDir, {
    name: plan.name,
    uuid: plan.uuid,
    nicIndices: plan.nics.map((n) => n.index),
    bridges: plan.nics.map((n) => n.bridge),
    launcher: opts.launcher,
    managedBy: opts.managedBy,
    files,
    qmpSocket: files.qmpSocket,
    serialLog: logs.serial,
  });
  let record = claimed;
  let leases: Lease[] = [];
  try {
    if (deps.ensureNetworks) {
      deps.ensureNetworks(plan);
      checkBridges(plan.nics.filter((n) => n.network !== undefined), deps);
    }
    // After the claim: a running VM's logs are never rotated under it.
    const qemuLogStart = openVmLogs(logs, `-- uncloud-vm: VM ${plan.name} (${plan.uuid}) starting at ${record.started} --`);
    // The claim proved no qemu of this VM runs here: what an earlier run of it still holds is stale.
    if (dead?.record) await giveBackHeld(deps.store, deps.host, dead.record);
    const known = plan.named ? await deps.store.getIdentity(plan.name) : null;
    // What this VM had last: its remembered identity, else the record an earlier run of it left behind
    // (a launcher killed before it remembered anything).
    const lastMacs = known?.macs ?? (dead?.record?.uuid === plan.uuid ? dead.record.nics.map((n) => n.mac) : []);
    // usedHere (from the claim): MACs that VMs running here use, never handed to this one even if the store
    // lost their keys (etcd).
    const requests: LeaseRequest[] = plan.nics.map((nic) => {
      const req: LeaseRequest = { vm: { uuid: plan.uuid, name: plan.name }, nic: nic.index, owners: [opts.launcher] };
      if (nic.mac !== undefined) {
        const user = usedHere.get(nic.mac);
        if (user) throw new UncloudError('MAC_HELD', `MAC ${nic.mac} is used by VM ${user}, running on this host; pick another`);
        req.mac = nic.mac;
      } else if (lastMacs[nic.index] !== undefined && !usedHere.has(lastMacs[nic.index]!)) req.prefer = lastMacs[nic.index]!;
      return req;
    });
    await releaseOwnStale(deps, plan.uuid, requests.flatMap((r) => [r.mac, r.prefer].filter((m): m is string => m !== undefined)));
    leases = await deps.store.allocate(deps.pool, requests);
    const spec = specFor(
      plan,
      leases.map((l) => l.mac),
      files,
      logs,
      record.taps,
    );
    record = { ...record, nics: spec.nics.map(({ index, mac, tap, bridge }) => ({ index, mac, tap, bridge })) };
    writeRecord(files, record);
    for (const [i, req] of requests.entries()) {
      const previous = req.mac === undefined ? lastMacs[req.nic ?? i] : undefined;
      if (previous !== undefined && leases[i]!.mac !== previous) {
        const user = usedHere.get(previous);
        const by = user !== undefined ? `VM ${user}` : holderOf(await deps.store.get(previous), deps.host);
        deps.note(`VM ${plan.name}: nic${req.nic}'s previous MAC ${previous} is held by ${by}; using ${leases[i]!.mac}`);
      }
    }
    const argv = buildQemuArgv(spec);
    const addresses = nicAddressesOf(plan, spec, deps.bridges);
    for (const nic of spec.nics) {
      const input = { vm: spec.name, index: nic.index, iface: nic.tap, bridge: nic.bridge, mac: nic.mac, addresses: addresses[nic.index]! };
      const afterDown = opts.releaseOnDown ? `${[...opts.releaseOnDown, nic.mac].map(shellQuote).join(' ')} >/dev/null 2>&1 || true` : ':';
      writeScript(nic.ifup, renderIfup(input));
      writeScript(nic.ifdown, renderIfdown(input, afterDown));
    }
    writeScript(files.execScript, render(loadTemplate('exec.sh'), { vm: spec.name }, shellQuote, { command: argv.map(shellQuote).join(' ') }));
    record = {
      ...record,
      nics: record.nics.map((n) => ({ ...n, addresses: addresses[n.index]! })),
      operatorQmpSocket: spec.operatorQmpSocket,
      consoleSocket: spec.console ? null : spec.consoleSocket,
      noReboot: spec.noReboot,
    };
    writeRecord(files, record);
    if (opts.managedBy === 'unit') {
      // This process ends before systemd starts qemu: the leases are held, not owned, until `hook adopt`.
      await deps.store.setOwners(
        leases.map((l) => l.mac),
        [],
      );
    }
    const identity: VmIdentity | null = plan.named
      ? { version: 1, name: plan.name, uuid: plan.uuid, macs: leases.map((l) => l.mac), updated: record.started }
      : null;
    return { spec, argv, files, logs, qemuLogStart, leases, record, identity, previousIdentity: known };
  } catch (err) {
    await giveBackVm(deps.store, deps.host, { files, record: { ...record, nics: leases.map((l, i) => ({ index: plan.nics[i]!.index, mac: l.mac, tap: record.taps[i]!, bridge: plan.nics[i]!.bridge })) } });
    throw err;
  }
}

/** Remember a named VM's UUID and MACs once its qemu runs. A failure is a note: the VM runs. */
async function rememberIdentity(vm: PreparedVm, deps: LaunchDeps): Promise<void> {
  if (!vm.identity) return;
  await deps.store.putIdentity({ ...vm.identity, updated: new Date().toISOString() }).catch((err: Error) => {
    deps.note(`VM ${vm.spec.name}: could not remember its UUID and MACs: ${err.message}`);
  });
}

/** qemu failed to start: the VM is remembered as before (a new name not at all). */
async function forgetFailedStart(vm: PreparedVm, deps: LaunchDeps): Promise<void> {
  if (!vm.identity) return;
  const undo = vm.previousIdentity ? deps.store.putIdentity(vm.previousIdentity) : deps.store.deleteIdentity(vm.spec.name);
  await Promise.resolve(undo).catch(() => undefined);
}

/** Leases this VM itself left on this host (a killed run): the claim proved they are stale. */
async function releaseOwnStale(deps: LaunchDeps, uuid: string, macs: string[]): Promise<void> {
  for (const mac of macs) {
    const held = await deps.store.get(mac);
    if (held?.vm?.uuid === uuid && held.host === deps.host) await deps.store.release(mac, uuid);
  }
}

const exitCodeOf = (signal: string): number => 128 + (osConstants.signals[signal as NodeJS.Signals] ?? 0);

/**
 * Record qemu as the owner of the VM's leases (beside the launcher) before it may run: exec.sh waits at
 * its gate (fd 3) until told "go", and ends if the launcher dies first. So no qemu ever runs that its
 * leases do not name.
 */
async function recordQemu(vm: PreparedVm, deps: LaunchDeps, pid: number | undefined): Promise<Owner> {
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

function openGate(gate: NodeJS.WritableStream | null | undefined): void {
  gate?.end('go\n');
}

/**
 * Spawn qemu; if even that fails (execa will not load, bad options), give back what the VM took.
 * The subprocess comes boxed: it is a thenable, and returning it bare would await qemu's exit.
 */
async function spawnOrGiveBack<T>(vm: PreparedVm, deps: LaunchDeps, spawn: (execa: typeof import('execa').execa) => T): Promise<{ child: T }> {
  try {
    return { child: spawn((await loadExeca()).execa) };
  } catch (err) {
    await giveBackVm(deps.store, deps.host, vm);
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
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  // A signal that comes while execa still loads: qemu is not started at all, and what the VM took goes back.
  let early: NodeJS.Signals | undefined;
  const onEarly = (sig: NodeJS.Signals): void => void (early ??= sig);
  for (const s of signals) process.on(s, onEarly);
  try {
    await loadExeca().catch(() => undefined);
  } finally {
    for (const s of signals) process.off(s, onEarly);
  }
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
  } finally {
    for (const s of signals) process.off(s, onSignal);
    // qemu has ended: what it held goes back (its ifdown scripts ran unless it was killed).
    await giveBackVm(deps.store, deps.host, vm);
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
  const { child } = await spawnOrGiveBack(vm, deps, (execa) =>
    execa('/bin/sh', [vm.files.execScript, '--gate'], {
      reject: false,
      stdio: ['ignore', 'ignore', { file: vm.logs.qemu, append: true }, 'pipe'],
      detached: true,
      cleanup: false,
    }),
  );
  try {
    if (child.pid === undefined) throw notStarted(file, (await child) as { code?: string });
    const qemu = await recordQemu(vm, deps, child.pid);
    await rememberIdentity(vm, deps);
    openGate(child.stdio[3] as unknown as NodeJS.WritableStream);
    let exited = false;
    void child.then(() => (exited = true));
    const ready = await waitForQmp(vm.spec.qmpSocket, () => exited, readyTimeoutMs);
    if (ready !== 'ready') await forgetFailedStart(vm, deps);
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
    await giveBackVm(deps.store, deps.host, vm);
    throw err;
  }
}

/** qemu's whole stderr of a failed start, as the tail of an error message (its last 40 lines). */
export function qemuSaid(text: unknown): string {
  if (typeof text !== 'string' || text.trim() === '') return '';
  const lines = text.trimEnd().split('\n');
  const shown = lines.slice(-40).map((l) => `  ${l}`);
  return `; qemu said:\n${lines.length > 40 ? '  …\n' : ''}${shown.join('\n')}`;
}
