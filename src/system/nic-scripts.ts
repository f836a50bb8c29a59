/** A NIC's ifup/ifdown scripts (templates/), with its guard batches rendered in. */
import { formatMac, parseMac, tapMacFor } from '../core/mac.js';
import type { NicAddresses } from '../core/nic-allowed.js';
import { guardBatch, unguardBatch } from '../core/nic-guard-rules.js';
import { shellQuote } from '../core/quote.js';
import { loadTemplate, render } from './templates.js';

export interface NicScriptInput {
  vm: string;
  index: number;
  /** The tap (or any interface) the scripts are for; QEMU passes it as $1. */
  iface: string;
  bridge: string;
  mac: string;
  addresses: NicAddresses;
  /** The file ifup.sh creates before it installs the guard, ifdown.sh removes after (nic-guard.ts guardMarkPath). */
  guardMark: string;
}

function values(nic: NicScriptInput): Record<string, string> {
  const mac = parseMac(nic.mac);
  const allowed = nic.addresses.allowed;
  return {
    vm: nic.vm,
    index: String(nic.index),
    iface: nic.iface,
    bridge: nic.bridge,
    tapMac: formatMac(tapMacFor(mac)),
    filter: allowed ? 'on' : 'off',
    guard: allowed ? guardBatch(nic.iface, mac, allowed) : '',
    unguard: allowed ? unguardBatch(nic.iface, mac, allowed) : '',
    guardMark: nic.guardMark,
  };
}

export function renderIfup(nic: NicScriptInput): string {
  return render(loadTemplate('ifup.sh'), values(nic), shellQuote);
}

/** afterDown: a command line, already quoted, run after the NIC is down (or ':'). */
export function renderIfdown(nic: NicScriptInput, afterDown = ':'): string {
  return render(loadTemplate('ifdown.sh'), values(nic), shellQuote, { afterDown });
}
