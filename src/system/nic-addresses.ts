/** A NIC's IPv6 addresses and guard: from its MAC and its bridge's network (IPv6 /64s from config, else the bridge's own). */
import { readFileSync } from 'node:fs';
import { formatCidr } from '../core/ip.js';
import { parseMac } from '../core/mac.js';
import { type BridgeConfig, type BridgeFacts, type NicAddresses, nicAddresses } from '../core/nic-allowed.js';
import type { VmSpec } from '../core/qemu-argv.js';
import { guardOptions } from '../core/nic-request.js';
import type { VmPlan } from '../core/vm-plan.js';

/** The global-scope /64s of an interface, from /proc/net/if_inet6 (no process to spawn). */
export function interfacePrefixes64(iface: string, table = readIfInet6()): string[] {
  const out = new Set<string>();
  for (const line of table.split('\n')) {
    const [hex, , len, scope, , name] = line.trim().split(/\s+/);
    if (name !== iface || len !== '40' || scope !== '00' || !hex || hex.length !== 32) continue;
    const addr = BigInt(`0x${hex}`) & ~((1n << 64n) - 1n);
    out.add(formatCidr({ family: 6, addr, len: 64 }));
  }
  return [...out];
}

function readIfInet6(): string {
  try {
    return readFileSync('/proc/net/if_inet6', 'utf8');
  } catch {
    return '';
  }
}

export function bridgeFacts(bridge: string, bridges: Record<string, BridgeConfig>): BridgeFacts {
  const conf = bridges[bridge];
  if (conf && conf.prefixes.length > 0) return { prefixes: conf.prefixes, source: 'config', ipv6Only: conf.ipv6Only };
  const own = interfacePrefixes64(bridge);
  return { prefixes: own, source: own.length > 0 ? 'bridge' : 'none', ipv6Only: conf?.ipv6Only ?? false };
}

/** Each NIC's IPv6 addresses and guard, from its MAC and its bridge's network (config "bridges", else the bridge's own /64s). */
export function nicAddressesOf(plan: VmPlan, spec: VmSpec, bridges: Record<string, BridgeConfig> = {}): NicAddresses[] {
  return spec.nics.map((nic, i) => nicAddresses(parseMac(nic.mac), guardOptions(plan.nics[i]!), bridgeFacts(nic.bridge, bridges)));
}
