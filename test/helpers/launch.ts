/**
 * The frame of the launch modules' own tests (prepare-vm, qemu-process, supervise-vm, run-detached): a file
 * store, run dir and state dir in a temp dir, deps whose bridges all exist (no qemu here runs ifup, so no tap
 * is made), a stand-in qemu written per test (test/fixtures/fake-qemu behind a wrapper, or a few lines of sh),
 * and what a test needs to see what a start left: leases, run dirs, logs, whether qemu ever ran. Whatever a
 * test left running (a qemu, an exec.sh waiting at its gate) is killed after it.
 */
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { UncloudError } from '../../src/core/errors.js';
import { parsePool } from '../../src/core/mac.js';
import type { UuidSource } from '../../src/core/vm-identity.js';
import { planVm, type StartOptions, type VmPlan } from '../../src/core/vm-plan.js';
import type { LaunchDeps, PreparedVm, PrepareOptions } from '../../src/qemu/prepare-vm.js';
import { prepareVm } from '../../src/qemu/prepare-vm.js';
import { FileStore } from '../../src/store/file-store.js';
import type { Owner, VmIdentity } from '../../src/store/store.js';
import { currentOwner, processCmdline } from '../../src/system/proc.js';
import { FAKE_QEMU, waitFor } from './cli.js';
import { type FakeQmp, fakeQmp } from './fake-qmp.js';
import { alive } from './process.js';
import { testUuid } from './run-dir-vm.js';

export const HOST = 'h1';
export const pool = parsePool('42:00:00');
/** This process: the launcher of every VM a test prepares. */
export const me: Owner = currentOwner(process.pid)!;

export interface FakeQemuOptions {
  /** Exit code when it ends by itself (default 0). */
  exit?: number;
  /** Seconds it runs before that (default 0). */
  sleep?: number;
  /** A line it prints on stderr at start. */
  stderr?: string;
  /** Serve its -qmp socket like qemu (default true). */
  qmp?: boolean;
  /** With QMP: ms from the power button to the guest's power-off (default 100). */
  powerdownMs?: number;
}

export interface LaunchFrame {
  readonly dir: string;
  readonly runDir: string;
  readonly stateDir: string;
  readonly store: FileStore;
  readonly deps: LaunchDeps;
  /** What the launch said (deps.note), in order. */
  readonly notes: string[];
  /** qemu's stderr as shown once it is up (deps.qemuStderr). */
  readonly shown: string[];
  /** Where the last fake qemu written records its argv: it exists once qemu ran (past its gate). */
  readonly qemuRan: string;
  /** test/fixtures/fake-qemu behind a wrapper with these settings; its path, for --qemu. */
  fakeQemu: (opts?: FakeQemuOptions) => string;
  /** A qemu that is a few lines of sh (exec'd by exec.sh with qemu's argv); it touches qemuRan first. */
  shQemu: (body: string) => string;
  /** A QMP socket at a VM's path, as qemu makes it once it runs (for an sh qemu); closed after the test. */
  serveQmp: (vm: PreparedVm) => Promise<FakeQmp>;
  /** A plan as `start` makes it (tcg, 64 MiB, one NIC on br0 unless told), for the qemu given. */
  plan: (qemu: string, opts?: StartOptions) => VmPlan;
  prepare: (plan: VmPlan, opts?: Partial<PrepareOptions>, deps?: Partial<LaunchDeps>) => Promise<PreparedVm>;
  /** Every lease as "mac vm-name", in MAC order. */
  held: () => Promise<string[]>;
  /** The owners' pids of one MAC's lease (null when free). */
  ownerPids: (mac: string) => Promise<number[] | null>;
  /** The VM run dirs present (staging dirs and the lock left out). */
  runDirs: () => string[];
  /** Processes whose command line names this frame's dir (qemus, exec.sh at its gate), alive. */
  leftovers: () => number[];
  /** What a VM's end left: leases, run dirs, and whether qemu ever ran (NOTHING_LEFT when all is given back). */
  left: () => Promise<{ held: string[]; runDirs: string[]; qemuRan: boolean }>;
  /** The frame's store with some methods replaced (a store that refuses, or does something on the way). */
  storeWith: (over: Partial<FileStore>) => FileStore;
  /** web1 remembered with a MAC another VM (db1) holds now, prepared: it leases another one. */
  knownVm: (qemu: string, opts?: Partial<PrepareOptions>) => Promise<{ vm: PreparedVm; before: VmIdentity }>;
}

export const NOTHING_LEFT = { held: [], runDirs: [], qemuRan: true };

/** A store's refusal, as a full disk gives it. */
export const refused = (): Promise<never> => Promise.reject(new UncloudError('WRITE_FAILED', 'disk full'));

/** The error a promise rejects with (it must reject). */
export async function rejection(p: Promise<unknown>): Promise<UncloudError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof Error)) throw new Error('expected a failure');
  return err as UncloudError;
}

const facts = { totalMemoryMiB: 4096, cpus: 2, kvmUsable: false };
const uuids: UuidSource = { random: testUuid, forName: () => testUuid() };
// The fake qemu is node: without the machine's extra CA bundle it starts several times faster.
const WRAPPER = (env: Record<string, string>) =>
  `#!/bin/sh\nunset NODE_EXTRA_CA_CERTS\n${Object.entries(env)
    .map(([k, v]) => `export ${k}='${v.replaceAll("'", `'\\''`)}'\n`)
    .join('')}exec '${FAKE_QEMU}' "$@"\n`;

export function launchFrame(prefix = 'uncloud-vm-launch-'): LaunchFrame {
  let dir = '';
  let store: FileStore | undefined;
  let scripts = 0;
  let qmp: FakeQmp | undefined;
  const notes: string[] = [];
  const shown: string[] = [];
  const frame = {
    get dir() {
      return dir;
    },
    get runDir() {
      return join(dir, 'run');
    },
    get stateDir() {
      return join(dir, 'state');
    },
    get store() {
      store ??= new FileStore({ dir: frame.stateDir, host: HOST });
      return store;
    },
    get deps(): LaunchDeps {
      return {
        store: frame.store,
        pool,
        runDir: frame.runDir,
        stateDir: frame.stateDir,
        host: HOST,
        bridgeExists: () => true,
        note: (m) => void notes.push(m),
        qemuStderr: (chunk) => void shown.push(chunk),
        stopTimeoutS: 30,
      };
    },
    notes,
    shown,
    get qemuRan() {
      return join(dir, 'qemu-ran');
    },
    fakeQemu: (opts: FakeQemuOptions = {}) => {
      const env: Record<string, string> = { FAKE_QEMU_LOG: frame.qemuRan, FAKE_QEMU_EXIT: String(opts.exit ?? 0), FAKE_QEMU_SLEEP: String(opts.sleep ?? 0) };
      if (opts.stderr !== undefined) env.FAKE_QEMU_STDERR = opts.stderr;
      if (opts.qmp !== false) env.FAKE_QEMU_QMP = '1';
      if (opts.powerdownMs !== undefined) env.FAKE_QEMU_POWERDOWN_MS = String(opts.powerdownMs);
      const path = join(dir, `qemu-${++scripts}`);
      writeFileSync(path, WRAPPER(env));
      chmodSync(path, 0o755);
      return path;
    },
    shQemu: (body: string) => {
      const path = join(dir, `qemu-${++scripts}`);
      writeFileSync(path, `#!/bin/sh\n: > '${frame.qemuRan}'\n${body}\n`);
      chmodSync(path, 0o755);
      return path;
    },
    serveQmp: async (vm: PreparedVm) => (qmp = await fakeQmp(vm.spec.qmpSocket)),
    plan: (qemu: string, opts: StartOptions = {}) => planVm({ accel: 'tcg', memory: '64', ...opts, qemu }, facts, { bridge: 'br0', qemu: 'qemu-system-x86_64' }, uuids),
    prepare: (plan: VmPlan, opts: Partial<PrepareOptions> = {}, deps: Partial<LaunchDeps> = {}) => prepareVm(plan, { ...frame.deps, ...deps }, { launcher: me, managedBy: 'launcher', ...opts }),
    held: async () => (await frame.store.list()).leases.map((l) => `${l.mac} ${l.vm?.name ?? '-'}`),
    ownerPids: async (mac: string) => (await frame.store.get(mac))?.owners.map((o) => o.pid) ?? null,
    runDirs: () => (existsSync(frame.runDir) ? readdirSync(frame.runDir, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name) : []),
    left: async () => ({ held: await frame.held(), runDirs: frame.runDirs(), qemuRan: existsSync(frame.qemuRan) }),
    storeWith: (over: Partial<FileStore>) => Object.assign(Object.create(frame.store) as FileStore, over),
    knownVm: async (qemu: string, opts: Partial<PrepareOptions> = {}) => {
      const uuid = testUuid();
      const before: VmIdentity = { version: 1, name: 'web1', uuid, macs: ['42:00:00:00:00:05'], updated: new Date(0).toISOString() };
      await frame.store.putIdentity(before);
      await frame.store.allocate(pool, [{ vm: { uuid: testUuid(), name: 'db1' }, nic: 0, owners: [], mac: '42:00:00:00:00:05' }]);
      return { vm: await frame.prepare(frame.plan(qemu, { name: 'web1', uuid }), opts), before };
    },
    leftovers: () =>
      readdirSync('/proc')
        .filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid)
        .map(Number)
        .filter((pid) => alive(pid) && (processCmdline(pid) ?? []).some((a) => a.includes(dir))),
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
    notes.length = 0;
    shown.length = 0;
  });
  afterEach(async () => {
    await qmp?.close();
    qmp = undefined;
    for (const pid of frame.leftovers()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await waitFor('leftover processes gone', () => frame.leftovers().length === 0);
    await store?.close();
    store = undefined;
    rmSync(dir, { recursive: true, force: true });
  });
  return frame;
}

/** The text of a file, or null when it is not there. */
export const readOrNull = (path: string): string | null => (existsSync(path) ? readFileSync(path, 'utf8') : null);
