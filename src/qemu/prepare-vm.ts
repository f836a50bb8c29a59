/**
 * Prepare a VM to run: check its bridges, claim it (run dir, tap names), lease its MACs and write its
 * ifup/ifdown/exec scripts. Gives everything back on failure. supervise-vm.ts and run-detached.ts run it.
 */
import { UncloudError } from '../core/errors.js';
import type { Pool } from '../core/mac.js';
import type { BridgeConfig } from '../core/nic-allowed.js';
import { buildQemuArgv, type VmSpec } from '../core/qemu-argv.js';
import { shellQuote } from '../core/quote.js';
import { type VmLogFiles, vmLogFiles, type VmRunFiles, vmRunFiles } from '../core/vm-files.js';
import { specFor, type VmPlan } from '../core/vm-plan.js';
import { holderOf } from '../store/policy.js';
import type { Lease, LeaseRequest, Owner, Store, VmIdentity } from '../store/store.js';
import { findExecutable } from '../system/host.js';
import { nicAddressesOf } from '../system/nic-addresses.js';
import { guardMarkPath } from '../system/nic-guard.js';
import { renderIfdown, renderIfup } from '../system/nic-scripts.js';
import { type VmRecord, writeRecord, writeScript } from '../system/run-dir.js';
import { claimVm } from '../system/vm-claim.js';
import { loadTemplate, render } from '../system/templates.js';
import { openVmLogs } from '../system/vm-logs.js';
import { exitCodeOf } from './held-signals.js';
import { type GatedQemu, qemuNotFound, qemuOwner, spawnGate } from './qemu-process.js';
import { giveBackAfterFailure, giveBackHeld } from './reconcile.js';

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
  /** qemu at its gate, when spawned while the VM was prepared (PrepareOptions.gate). */
  gate?: GatedQemu;
}

export interface PrepareOptions {
  /** The process preparing the VM: owns its leases until qemu is recorded. */
  launcher: Owner;
  /** 'unit': systemd runs qemu later; the leases are held (no owner) until `hook adopt` names qemu. */
  managedBy: VmRecord['managedBy'];
  /** A command (argv) each ifdown script runs with the NIC's MAC appended, to give it back (detached VMs). */
  releaseOnDown?: string[];
  /** A stop signal that came meanwhile (held back by the caller): the start gives everything back instead. */
  interrupted?: () => NodeJS.Signals | undefined;
  /**
   * The foreground start: qemu is spawned at its gate as soon as the VM is claimed, and the leases name it
   * (beside the launcher) from their creation, with no second round in the store once qemu is spawned.
   */
  gate?: boolean;
}

/** A start ended by a stop signal before its VM ran (or, detached, before it answered): everything is given back. */
export const interruptedStart = (name: string, sig: NodeJS.Signals): UncloudError =>
  new UncloudError('INTERRUPTED', `${sig}: VM ${name} was not started; what it took is given back`, exitCodeOf(sig));

function checkInterrupted(name: string, opts: PrepareOptions): void {
  const sig = opts.interrupted?.();
  if (sig) throw interruptedStart(name, sig);
}

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
  if (!findExecutable(plan.qemu)) throw qemuNotFound(plan.qemu);
  // A network's bridge is made sure of after the claim (ensureNetworks); any other must exist already.
  checkBridges(plan.nics.filter((n) => n.network === undefined || !deps.ensureNetworks), deps);
  checkInterrupted(plan.name, opts);
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
  let gate: GatedQemu | undefined;
  try {
    // Its shell starts meanwhile; it reads exec.sh only once told "go".
    if (opts.gate) gate = spawnGate(files.execScript, plan.console);
    const qemu = gate ? qemuOwner(gate.child.pid) : null;
    if (deps.ensureNetworks) {
      deps.ensureNetworks(plan);
      checkBridges(plan.nics.filter((n) => n.network !== undefined), deps);
    }
    // The claim proved no qemu of this VM runs here: what an earlier run of it still holds is stale.
    if (dead?.record) await giveBackHeld(deps.store, deps.host, dead.record);
    const known = plan.named ? await deps.store.getIdentity(plan.name) : null;
    // What this VM had last: its remembered identity, else the record an earlier run of it left behind
    // (a launcher killed before it remembered anything).
    const lastMacs = known?.macs ?? (dead?.record?.uuid === plan.uuid ? dead.record.nics.map((n) => n.mac) : []);
    // usedHere (from the claim): MACs that VMs running here use, never handed to this one even if the store
    // lost their keys (etcd).
    const requests: LeaseRequest[] = plan.nics.map((nic) => {
      const req: LeaseRequest = { vm: { uuid: plan.uuid, name: plan.name }, nic: nic.index, owners: qemu ? [opts.launcher, qemu] : [opts.launcher] };
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
      const input = { vm: spec.name, index: nic.index, iface: nic.tap, bridge: nic.bridge, mac: nic.mac, addresses: addresses[nic.index]!, guardMark: guardMarkPath(deps.runDir, nic.tap) };
      const afterDown = opts.releaseOnDown ? `${[...opts.releaseOnDown, nic.mac].map(shellQuote).join(' ')} >/dev/null 2>&1 || true` : ':';
      writeScript(nic.ifup, renderIfup(input));
      writeScript(nic.ifdown, renderIfdown(input, afterDown));
    }
    writeScript(files.execScript, render(loadTemplate('exec.sh'), { vm: spec.name }, shellQuote, { command: argv.map(shellQuote).join(' ') }));
    // One write of the record, naming the MACs, once they are leased and the scripts are in place. A kill
    // before it leaves the claim's record: the leases name only this launcher (and its gate, which ends with it), so gc frees them.
    record = {
      ...record,
      qemu,
      nics: spec.nics.map(({ index, mac, tap, bridge }) => ({ index, mac, tap, bridge, addresses: addresses[index]! })),
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
    checkInterrupted(plan.name, opts);
    // Once every refusal has passed (a refused start leaves no logs behind), and after the claim: a running
    // VM's logs are never rotated under it.
    const qemuLogStart = openVmLogs(logs, `-- uncloud-vm: VM ${plan.name} (${plan.uuid}) starting at ${record.started} --`);
    const identity: VmIdentity | null = plan.named
      ? { version: 1, name: plan.name, uuid: plan.uuid, macs: leases.map((l) => l.mac), updated: record.started }
      : null;
    return { spec, argv, files, logs, qemuLogStart, leases, record, identity, previousIdentity: known, ...(gate ? { gate } : {}) };
  } catch (err) {
    gate?.child.kill('SIGKILL');
    await giveBackAfterFailure(deps.store, deps.host, { files, record: { ...record, nics: leases.map((l, i) => ({ index: plan.nics[i]!.index, mac: l.mac, tap: record.taps[i]!, bridge: plan.nics[i]!.bridge })) } }, deps.note);
    throw err;
  }
}

/** Leases this VM itself left on this host (a killed run): the claim proved they are stale. */
async function releaseOwnStale(deps: LaunchDeps, uuid: string, macs: string[]): Promise<void> {
  for (const mac of macs) {
    const held = await deps.store.get(mac);
    if (held?.vm?.uuid === uuid && held.host === deps.host) await deps.store.release(mac, uuid);
  }
}
