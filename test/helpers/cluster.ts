/**
 * A small uncloud for the real-VM cluster tests (scripts/lib/cluster.mjs, shared with `npm run demo:cluster`):
 * an IPv6 underlay, three etcd members in namespaces of their own, and hypervisor namespaces h1, h2 with their
 * own state, run dir and `uncloud-vm agent`.
 */
import type { ChildProcess } from 'node:child_process';
import * as lib from '../../scripts/lib/cluster.mjs';
import type { CliResult, RunOptions, Sandbox } from './cli.js';

export interface EtcdMember {
  name: string;
  ns: string;
  addr: string;
  endpoint: string;
  running: () => boolean;
  pid: () => number | undefined;
  /** SIGKILL (a crashed etcd host). */
  kill: () => Promise<void>;
  /** Start again on its data dir; resolves once it answers (needs a quorum). */
  restart: () => Promise<void>;
}

export interface Hypervisor {
  name: string;
  ns: string;
  addr: string;
  env: NodeJS.ProcessEnv;
  runDir: string;
  agent: ChildProcess | null;
  agentLog: string;
  cli: (args: string[], opts?: Omit<RunOptions, 'netns'>) => Promise<CliResult>;
  startAgent: () => Promise<ChildProcess>;
  /** SIGKILL everything the host runs; returns how many processes. */
  kill: () => number;
  cut: () => void;
  reconnect: () => void;
}

export interface Cluster {
  tag: string;
  url: string;
  endpoints: string[];
  members: EtcdMember[];
  hosts: Hypervisor[];
  etcdctl: (...args: string[]) => string;
  remove: () => Promise<void>;
}

let counter = 0;

export async function startCluster(opts: { hypervisors?: number; ttlS?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Cluster> {
  counter += 1;
  return (await lib.startCluster({ tag: `uccl-${process.pid}-${counter}`, ...opts })) as Cluster;
}

/** What bootGuest needs of a sandbox: the host's environment and run dir. */
export function hostSandbox(h: Hypervisor): Sandbox {
  return { env: h.env, runDir: h.runDir, stateDir: h.env.UNCLOUD_VM_STATE_DIR!, cleanup: () => undefined };
}

export const until: <T>(what: string, probe: () => T | Promise<T>, timeoutMs?: number, everyMs?: number) => Promise<T> = lib.until;
