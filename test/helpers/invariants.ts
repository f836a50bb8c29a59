/**
 * The promise uncloud-vm exists for, checked against what really runs (read from /proc and the network
 * namespace, not from our own records): every live qemu's MACs are held and owned by it; no MAC is held for
 * a VM whose qemu is gone; no run dir, tap or guard rule of a dead VM is left; no MAC is used by two live VMs.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { alive } from './process.js';

export interface LiveQemu {
  pid: number;
  name: string;
  uuid: string;
  macs: string[];
  taps: string[];
}

interface LeaseRow {
  mac?: string;
  state: string;
  vm: { uuid?: string; name: string } | null;
  owners?: { pid: number }[];
}

/** qemu processes (real or fake) whose files are under runDir, as their command lines say. */
export function liveQemus(runDir: string): LiveQemu[] {
  const out: LiveQemu[] = [];
  for (const e of readdirSync('/proc').filter((x) => /^[0-9]+$/.test(x))) {
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (!alive(Number(e)) || !argv.includes('-uuid') || !argv.some((a) => a.startsWith(`${runDir}/`))) continue;
    const at = (flag: string) => argv[argv.indexOf(flag) + 1]!;
    const macs = argv.flatMap((a) => /(?:^|,)mac=([0-9a-f:]{17})/.exec(a)?.[1] ?? []);
    const taps = argv.flatMap((a) => /(?:^|,)ifname=([^,]+)/.exec(a)?.[1] ?? []);
    out.push({ pid: Number(e), name: at('-name'), uuid: at('-uuid'), macs, taps });
  }
  return out;
}

export interface Report {
  qemus: number;
  leases: number;
  violations: string[];
}

export function checkInvariants(opts: { runDir: string; leases: LeaseRow[]; netns?: string }): Report {
  const qemus = liveQemus(opts.runDir);
  const v: string[] = [];
  const held = new Map(opts.leases.filter((l) => l.mac).map((l) => [l.mac!, l]));
  const owner = new Map<string, string>();
  for (const q of qemus) {
    for (const mac of q.macs) {
      const l = held.get(mac);
      if (!l) v.push(`live qemu ${q.name} (pid ${q.pid}) uses ${mac}, which is not held`);
      else if (l.vm?.uuid !== q.uuid) v.push(`live qemu ${q.name} uses ${mac}, held for ${l.vm?.name ?? 'a manual allocation'}`);
      else if (!l.owners?.some((o) => o.pid === q.pid)) v.push(`${mac} of live qemu ${q.name} is not owned by its pid ${q.pid}`);
      if (owner.has(mac)) v.push(`${mac} is used by two live VMs: ${owner.get(mac)} and ${q.name}`);
      owner.set(mac, q.name);
    }
  }
  const liveUuids = new Set(qemus.map((q) => q.uuid));
  for (const l of opts.leases) {
    if (l.state === 'damaged') v.push(`a damaged record: ${JSON.stringify(l)}`);
    if (l.vm?.uuid && !liveUuids.has(l.vm.uuid)) v.push(`${l.mac} is held for VM ${l.vm.name}, whose qemu is gone`);
  }
  let dirs: string[] = [];
  try {
    // Run dirs are real directories; a stray file or symlink an operator left is not ours to judge.
    dirs = readdirSync(opts.runDir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
      .map((e) => e.name);
  } catch {
    dirs = [];
  }
  const liveNames = new Set(qemus.map((q) => q.name));
  for (const d of dirs) if (!liveNames.has(d)) v.push(`run dir ${d} is left, its qemu is gone`);
  if (opts.netns) {
    const liveTaps = new Set(qemus.flatMap((q) => q.taps));
    const inNs = (cmd: string, args: string[]) => execFileSync('ip', ['netns', 'exec', opts.netns!, cmd, ...args], { encoding: 'utf8' });
    const taps = inNs('ip', ['-o', 'link', 'show']).split('\n').flatMap((line) => /^\d+: (uc[0-9a-f]{10}n\d)[@:]/.exec(line)?.[1] ?? []);
    for (const t of taps) if (!liveTaps.has(t)) v.push(`tap ${t} is left, its qemu is gone`);
    const rules = inNs('nft', ['list', 'ruleset']);
    for (const t of new Set(rules.match(/uc[0-9a-f]{10}n\d/g) ?? [])) if (!liveTaps.has(t)) v.push(`guard rules of tap ${t} are left, its qemu is gone`);
  }
  return { qemus: qemus.length, leases: opts.leases.length, violations: v };
}
