/** `uncloud-vm network list|show|rm`: the VM networks (bridge + VXLAN device) on this host. */
import { UncloudError } from '../../core/errors.js';
import { parseNetworkId } from '../../core/network.js';
import { describeNetwork, listNetworks, type NetworkInfo, removeNetwork } from '../../system/network.js';
import { type Context, table } from '../context.js';
import type { Command } from 'commander';
import type { Action } from './shared/action.js';
import { examples } from './shared/help.js';

export function define(program: Command, action: Action): void {
  const network = program
    .command('network')
    .description('VM networks on this host: VXLAN segment <id> on bridge ucbr<id>, made by the first start that needs it')
    .addHelpText(
      'after',
      `
A start with --nic network=<id> (1 to 16777215) creates, if missing, VXLAN device ucvx<id> (VNI <id>, UDP 4789)
on the underlay and bridge ucbr<id>, and puts the NIC there. Floods go to multicast group ff05::<id in hex>
over vxlanDev, or to the hosts in vxlanPeers (for underlays without multicast). Guests get the MTU that fits
the underlay (vxlanDev's MTU minus 70 bytes for IPv6, or vxlanMtu). The devices stay after the VM ends.

Examples:
  UNCLOUD_VM_VXLAN_DEV=eth1 uncloud-vm start --name web1 --disk web1.qcow2 --nic network=42
  uncloud-vm network list
  uncloud-vm network show 42
  uncloud-vm network rm 42`,
    );
  network
    .command('list')
    .description('the networks on this host, their devices, flooding, MTU and VMs')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm network list', 'uncloud-vm network list --json'))
    .action(action((_a, o, ctx) => networkList(o, ctx)));
  network
    .command('show')
    .description('one network: VNI, multicast group or peers, underlay, MTU, ports, VMs')
    .argument('<id>', 'network id')
    .option('--json', 'machine-readable output')
    .addHelpText('after', examples('uncloud-vm network show 42', 'uncloud-vm network show 42 --json'))
    .action(action((a, o, ctx) => networkShow(a[0]!, o, ctx)));
  network
    .command('rm')
    .description("remove a network's bridge and VXLAN device from this host (refused while a VM uses it)")
    .argument('<id>', 'network id')
    .addHelpText('after', examples('uncloud-vm network rm 42'))
    .action(action((a, _o, ctx) => networkRm(a[0]!, ctx)));
}

const flood = (n: NetworkInfo): string => (n.peers.length > 0 ? `peers ${n.peers.join(',')}` : n.group ? `multicast ${n.group}` : '-');

export async function networkList(flags: { json?: boolean }, ctx: Context): Promise<number> {
  const nets = listNetworks(ctx.settings.runDir);
  if (flags.json) {
    ctx.out(JSON.stringify(nets, null, 2));
    return 0;
  }
  if (nets.length === 0) {
    ctx.out('no network exists on this host');
    return 0;
  }
  const rows = [['ID', 'BRIDGE', 'VXLAN', 'FLOOD', 'UNDERLAY', 'MTU', 'STATE', 'VMS']];
  for (const n of nets) {
    rows.push([String(n.id), n.bridge ?? '(missing)', n.vxlan ?? '(missing)', flood(n), n.underlay ?? n.local ?? '-', String(n.mtu ?? '-'), n.up ? 'up' : 'down', n.vms.join(',') || '-']);
  }
  ctx.out(table(rows));
  return 0;
}

export async function networkShow(idText: string, flags: { json?: boolean }, ctx: Context): Promise<number> {
  const id = parseNetworkId(idText);
  const n = describeNetwork(id, ctx.settings.runDir);
  if (!n) throw new UncloudError('NO_NETWORK', `network ${id} does not exist on this host; a start with --nic network=${id} creates it`);
  if (flags.json) {
    ctx.out(JSON.stringify(n, null, 2));
    return 0;
  }
  ctx.out(
    table([
      ['id', String(n.id)],
      ['bridge', n.bridge ?? '(missing)'],
      ['vxlan', n.vxlan ? `${n.vxlan} (VNI ${n.vni ?? '?'}, UDP ${n.port ?? '?'})` : '(missing)'],
      ['flood', flood(n)],
      ['underlay', [n.underlay, n.local].filter(Boolean).join(' ') || '-'],
      ['mtu', String(n.mtu ?? '-')],
      ['state', n.up ? 'up' : 'down'],
      ['ports', n.ports.join(' ') || '-'],
      ['vms', n.vms.join(' ') || '-'],
    ]),
  );
  return 0;
}

export async function networkRm(idText: string, ctx: Context): Promise<number> {
  const id = parseNetworkId(idText);
  const n = await removeNetwork(id, ctx.settings.runDir);
  ctx.err(`network ${id}: removed ${[n.vxlan, n.bridge].filter(Boolean).join(' and ')}`);
  return 0;
}
