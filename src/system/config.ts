/**
 * Settings: built-in defaults < config file < environment < flags.
 * Paths follow the FHS for root and XDG for everyone else.
 */
import { homedir, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { UncloudError, printable, usageError } from '../core/errors.js';
import { type BridgeConfig, parseBridges } from '../core/nic-allowed.js';
import { CONTROL_RE } from '../core/quote.js';
import { readTextIfExists } from './atomic-file.js';

export const DEFAULT_CONFIG_PATH = '/etc/uncloud-vm/config.json';

export interface Settings {
  stateDir: string;
  runDir: string;
  prefix: string;
  forcePrefix: boolean;
  bridge: string;
  qemu: string;
  store: string;
  /** This host's name in leases (etcd: whose leases gc may free). */
  host: string;
  /** VM networks (VXLAN): the underlay device, this host's underlay address, peers (comma-separated; empty = multicast), guests' MTU. */
  vxlanDev?: string;
  vxlanLocal?: string;
  vxlanPeers?: string;
  vxlanMtu?: string;
  /** Per bridge: its network's IPv6 /64s and whether it is IPv6-only, for the NIC guard (config file only). */
  bridges: Record<string, BridgeConfig>;
  /** The config file named by --config or UNCLOUD_VM_CONFIG (absolute); undefined for the default path. */
  config?: string;
}

/** What a user can set, by flag or environment; each is optional. */
export type Overrides = Partial<Settings> & { config?: string };

const KEYS: (keyof Settings)[] = ['stateDir', 'runDir', 'prefix', 'forcePrefix', 'bridge', 'qemu', 'store', 'host', 'vxlanDev', 'vxlanLocal', 'vxlanPeers', 'vxlanMtu'];
/** Keys only the config file sets. */
const FILE_KEYS = [...KEYS, 'bridges'];

const ENV: Record<string, keyof Settings | 'config'> = {
  UNCLOUD_VM_CONFIG: 'config',
  UNCLOUD_VM_STATE_DIR: 'stateDir',
  UNCLOUD_VM_RUN_DIR: 'runDir',
  UNCLOUD_VM_PREFIX: 'prefix',
  UNCLOUD_VM_BRIDGE: 'bridge',
  UNCLOUD_VM_QEMU: 'qemu',
  UNCLOUD_VM_STORE: 'store',
  UNCLOUD_VM_HOST: 'host',
  UNCLOUD_VM_VXLAN_DEV: 'vxlanDev',
  UNCLOUD_VM_VXLAN_LOCAL: 'vxlanLocal',
  UNCLOUD_VM_VXLAN_PEERS: 'vxlanPeers',
  UNCLOUD_VM_VXLAN_MTU: 'vxlanMtu',
};

export function defaultSettings(env: NodeJS.ProcessEnv, uid: number): Settings {
  const root = uid === 0;
  const home = env.HOME ?? homedir();
  const stateHome = env.XDG_STATE_HOME || join(home, '.local', 'state');
  const runtime = env.XDG_RUNTIME_DIR || `/tmp/uncloud-vm-${uid}`;
  return {
    stateDir: root ? '/var/lib/uncloud-vm' : join(stateHome, 'uncloud-vm'),
    runDir: root ? '/run/uncloud-vm' : join(runtime, 'uncloud-vm'),
    prefix: '42:00:00',
    forcePrefix: false,
    bridge: 'br0',
    qemu: 'qemu-system-x86_64',
    store: 'file',
    host: hostname(),
    bridges: {},
  };
}

export function readConfigFile(path: string, mustExist: boolean): Partial<Settings> {
  // A path from the command line or the environment: shown escaped (a newline in it stays on one line).
  const shown = printable(path);
  let text: string | null;
  try {
    // Non-blocking, and only a regular file: a FIFO given as the config file would hang every command (a
    // blocked read holds off even SIGTERM).
    text = readTextIfExists(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EISDIR' ? 'it is a directory' : code === 'ENOTREG' ? 'it is not a regular file (a FIFO, socket or device)' : (err as Error).message;
    throw new UncloudError('CONFIG', `cannot read config file ${shown}: ${why}`);
  }
  if (text === null) {
    if (!mustExist) return {};
    throw usageError(`config file ${shown} does not exist`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new UncloudError('CONFIG', `config file ${shown} is not valid JSON`, 2);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new UncloudError('CONFIG', `config file ${shown} must hold a JSON object`, 2);
  }
  const out: Partial<Settings> = {};
  for (const [key, value] of Object.entries(data)) {
    if (!FILE_KEYS.includes(key)) {
      throw new UncloudError('CONFIG', `config file ${path}: unknown key '${printable(key)}'; allowed: ${FILE_KEYS.join(', ')}`, 2);
    }
    if (key === 'bridges') {
      out.bridges = parseBridges(value, `config file ${path}`);
      continue;
    }
    const want = key === 'forcePrefix' ? 'boolean' : 'string';
    if (typeof value !== want) throw new UncloudError('CONFIG', `config file ${path}: '${key}' must be a ${want}`, 2);
    (out as Record<string, unknown>)[key] = value;
  }
  return out;
}

export function envOverrides(env: NodeJS.ProcessEnv): Overrides {
  const out: Record<string, string> = {};
  for (const [name, key] of Object.entries(ENV)) {
    const v = env[name];
    if (v !== undefined && v !== '') out[key] = v;
  }
  return out as Overrides;
}

/** Resolve settings: defaults < config file < env < flags. */
export function resolveSettings(flags: Overrides, env: NodeJS.ProcessEnv = process.env): Settings {
  const fromEnv = envOverrides(env);
  const configPath = flags.config ?? fromEnv.config;
  const file = readConfigFile(configPath ?? DEFAULT_CONFIG_PATH, configPath !== undefined);
  const merged: Settings = { ...defaultSettings(env, process.getuid?.() ?? 0), ...file, ...(configPath !== undefined ? { config: resolve(configPath) } : {}) };
  for (const src of [fromEnv, flags]) {
    for (const key of KEYS) {
      const v = src[key];
      if (v !== undefined) (merged as unknown as Record<string, unknown>)[key] = v;
    }
  }
  return checkSettings(merged);
}

const NAMES: Record<Exclude<keyof Settings, 'bridges'>, string> = {
  config: 'config file (--config, UNCLOUD_VM_CONFIG)',
  stateDir: 'state dir (--state-dir, UNCLOUD_VM_STATE_DIR)',
  runDir: 'run dir (--run-dir, UNCLOUD_VM_RUN_DIR)',
  prefix: 'prefix (--prefix, UNCLOUD_VM_PREFIX)',
  forcePrefix: '--force-prefix',
  bridge: 'bridge (UNCLOUD_VM_BRIDGE)',
  qemu: 'qemu (UNCLOUD_VM_QEMU)',
  store: 'store (--store, UNCLOUD_VM_STORE)',
  host: 'host name (UNCLOUD_VM_HOST)',
  vxlanDev: 'VXLAN underlay device (UNCLOUD_VM_VXLAN_DEV)',
  vxlanLocal: 'VXLAN local address (UNCLOUD_VM_VXLAN_LOCAL)',
  vxlanPeers: 'VXLAN peers (UNCLOUD_VM_VXLAN_PEERS)',
  vxlanMtu: 'VXLAN MTU (UNCLOUD_VM_VXLAN_MTU)',
};

/**
 * Settings end up in unit files, leases and paths of other processes: refuse control characters up front,
 * and make the directories absolute (a unit runs elsewhere than the shell that wrote it).
 */
export function checkSettings(s: Settings): Settings {
  for (const key of [...KEYS, 'config'] as const) {
    const v = s[key];
    if (typeof v === 'string' && (v === '' || CONTROL_RE.test(v))) {
      throw usageError(`invalid ${NAMES[key as keyof typeof NAMES]} '${printable(v)}': must be non-empty and free of control characters`);
    }
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/.test(s.host)) {
    throw usageError(`invalid ${NAMES.host} '${printable(s.host)}': use letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  return { ...s, stateDir: resolve(s.stateDir), runDir: resolve(s.runDir) };
}
