/** `uncloud-vm network list|show|rm`: the VM networks (bridge + VXLAN device) on this host. */
import { UncloudError } from '../../core/errors.js';
import { parseNetworkId } from '../../core/network.js';
import { describeNetwork, listNetworks, type NetworkInfo, removeNetwork } from '../../system/network.js';
import { type Context, table } from '../context.js';

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
