/**
 * The frame of every CLI test that starts VMs with the fake qemu (test/fixtures/fake-qemu): a network
 * namespace with bridges for the file, a state/run sandbox whose qemu is the fake one, and the CLI run inside
 * that namespace; whatever a test left running there is killed after it. (Real VMs: test/helpers/e2e.ts.)
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { cli, type CliResult, FAKE_QEMU, type RunOptions, sandbox, type Sandbox } from './cli.js';
import { liveQemus } from './invariants.js';
import { createNetns, type Netns } from './netns.js';

export interface FakeQemuOptions {
  /** The bridges the namespace has (default br0). */
  bridges?: string[];
  /** More environment for the CLI and the fake qemu (FAKE_QEMU_SLEEP, FAKE_QEMU_QMP…). */
  env?: NodeJS.ProcessEnv;
  /** One sandbox for the whole file instead of a fresh one per test. */
  sandboxPerFile?: boolean;
}

export interface FakeQemuEnv {
  ns: Netns;
  sb: Sandbox;
  /** The built CLI in the namespace, with the sandbox's environment (plus `env`). */
  run: (args: string[], env?: NodeJS.ProcessEnv, onSpawn?: RunOptions['onSpawn']) => Promise<CliResult>;
  /** `start --accel tcg --memory 64 …`: a small VM the fake qemu pretends to run. */
  start: (args: string[], env?: NodeJS.ProcessEnv, onSpawn?: RunOptions['onSpawn']) => Promise<CliResult>;
  /** `mac list --json`. */
  leases: <Row = LeaseRow>() => Promise<Row[]>;
}

export interface LeaseRow {
  mac: string;
  state: string;
  vm: { uuid?: string; name: string } | null;
  owners: { pid: number }[];
}

export function fakeQemuEnvironment(opts: FakeQemuOptions = {}): FakeQemuEnv {
  const env = {} as FakeQemuEnv;
  const makeSandbox = () => {
    env.sb = sandbox({ UNCLOUD_VM_QEMU: FAKE_QEMU, ...opts.env });
  };
  /** Launchers and fake qemus a test left behind: in the namespace, and any qemu with files in the run dir. */
  const killLeftovers = () => {
    env.ns.killAll();
    for (const q of liveQemus(env.sb.runDir)) {
      try {
        process.kill(q.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  };
  beforeAll(() => {
    env.ns = createNetns(opts.bridges ?? ['br0']);
    if (opts.sandboxPerFile) makeSandbox();
  });
  afterAll(() => {
    if (opts.sandboxPerFile && env.sb) {
      killLeftovers();
      env.sb.cleanup();
    }
    env.ns?.remove();
  });
  if (!opts.sandboxPerFile) {
    beforeEach(makeSandbox);
    afterEach(() => {
      killLeftovers();
      env.sb.cleanup();
    });
  }
  env.run = (args, extra = {}, onSpawn) => cli(args, { env: { ...env.sb.env, ...extra }, netns: env.ns.name, ...(onSpawn ? { onSpawn } : {}) });
  env.start = (args, extra, onSpawn) => env.run(['start', '--accel', 'tcg', '--memory', '64', ...args], extra, onSpawn);
  env.leases = async <Row>() => JSON.parse((await env.run(['mac', 'list', '--json'])).stdout) as Row[];
  return env;
}
