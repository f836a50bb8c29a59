/** How commands show a NIC's IPv6 addresses and guard (dry run, status, list, mac list). */
import { join } from 'node:path';
import { linkLocalText } from '../core/eui64.js';
import { parseMac } from '../core/mac.js';
import { describeIpv4, type NicAddresses } from '../core/nic-allowed.js';
import { readRecord, runDirNames, type VmRecord } from '../system/run-dir.js';

/** Lines for a human: addresses, then what the guard lets the NIC send. */
export function addressLines(a: NicAddresses): [string, string][] {
  const from = { config: 'configured prefixes', bridge: "the bridge's own /64s", none: 'no prefix known' }[a.prefixSource];
  const rows: [string, string][] = [
    ['link-local', a.linkLocal],
    ['EUI-64', a.eui64.length > 0 ? `${a.eui64.join(', ')} (${from})` : `- (${from})`],
  ];
  if (!a.allowed) return [...rows, ['guard', 'off (filter=off)']];
  return [...rows, ['guard', 'on'], ['IPv6 from', a.allowed.ipv6.join(', ')], ['IPv4', describeIpv4(a)]];
}

/** A running VM's NIC addresses by MAC, from the run records on this host. */
export function addressesByMac(records: VmRecord[]): Map<string, NicAddresses> {
  const out = new Map<string, NicAddresses>();
  for (const r of records) for (const n of r.nics) if (n.addresses) out.set(n.mac, n.addresses);
  return out;
}

/** The run records of the VMs on this host (live or not). */
export function localRecords(runDir: string): VmRecord[] {
  return runDirNames(runDir).flatMap((e) => readRecord(join(runDir, e, 'vm.json')).record ?? []);
}

/** What is known of a MAC's addresses: all of it from a local run record, else its link-local address. */
export function addressesOfMac(mac: string, known: Map<string, NicAddresses>): NicAddresses | { linkLocal: string } {
  return known.get(mac) ?? { linkLocal: linkLocalText(parseMac(mac)) };
}
