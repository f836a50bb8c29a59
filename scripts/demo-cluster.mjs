// `npm run demo:cluster`: uncloud across hosts on one machine (root, Debian 12). A three-member etcd cluster
// and two hypervisors in network namespaces on an IPv6 underlay, an agent per hypervisor, one real guest on
// each on VXLAN network 42 with MACs from the one pool, pinging each other; then an etcd member is killed
// while both hosts allocate, and comes back. Prints what it sees and how long each step took; leaves nothing.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, startCluster, until } from './lib/cluster.mjs';

const t = () => performance.now();
const secs = (from) => `${((t() - from) / 1000).toFixed(1)} s`;
const say = (text) => console.log(`\n== ${text}`);
const indent = (text) => text.trimEnd().split('\n').map((l) => `   ${l}`).join('\n');

const guestDir = execFileSync('bash', [join(ROOT, 'scripts/build-test-guest.sh')], { encoding: 'utf8' }).trim().split('\n').pop();
const tStart = t();
const cluster = await startCluster({ tag: `uncloud-demo-${process.pid}`, ttlS: 10 });
const launchers = [];
const stopAll = async () => {
  for (const l of launchers) l.child?.kill('SIGTERM');
  await Promise.all(launchers.map((l) => l.done));
};
let failed = false;
try {
  const [h1, h2] = cluster.hosts;
  await Promise.all(cluster.hosts.map((h) => h.startAgent()));
  say(`cluster up in ${secs(tStart)}: etcd ${cluster.members.map((m) => `${m.name} ${m.endpoint}`).join(', ')}; hypervisors h1 (fd00::1), h2 (fd00::2), each with its agent`);
  console.log(`   store: ${cluster.url}`);

  say('booting one guest per hypervisor on network 42 (TCG)');
  const tBoot = t();
  const boot = (h, name, ip, peer) => {
    const l = { name, host: h, child: null };
    l.done = h.cli(
      ['start', '--name', name, '--accel', 'tcg', '--memory', '192', '--nic', 'network=42', '--no-reboot',
        '--kernel', join(guestDir, 'vmlinuz'), '--initrd', join(guestDir, 'initramfs.gz'),
        '--append', `console=ttyS0 panic=-1 quiet uc.ip.eth0=${ip}/24 uc.ping=${peer}`],
      { onSpawn: (c) => (l.child = c) },
    );
    l.serial = () => {
      const p = join(h.env.UNCLOUD_VM_STATE_DIR, 'logs', name, 'serial.log');
      return existsSync(p) ? readFileSync(p, 'utf8') : '';
    };
    launchers.push(l);
    return l;
  };
  const a = boot(h1, 'vm-a', '10.42.0.1', '10.42.0.2');
  const b = boot(h2, 'vm-b', '10.42.0.2', '10.42.0.1');
  await until('both guests to ping', () => [a, b].every((l) => /^UNCLOUD-PING \S+ (ok|fail)/m.test(l.serial())), 180_000, 200);
  say(`two guests booted and pinging over VXLAN after ${secs(tBoot)}; they say:`);
  for (const l of [a, b]) console.log(indent(l.serial().split('\n').filter((x) => /^UNCLOUD-(NIC|READY|PING)/.test(x)).map((x) => `${l.name}@${l.host.name}: ${x}`).join('\n')));
  if (![a, b].every((l) => /^UNCLOUD-PING \S+ ok/m.test(l.serial()))) failed = true;

  say('uncloud-vm mac list (on h1): one pool, each lease on its host');
  console.log(indent((await h1.cli(['mac', 'list'])).stdout));
  say('uncloud-vm network show 42 (on h2)');
  console.log(indent((await h2.cli(['network', 'show', '42'])).stdout));

  const [e1] = cluster.members;
  say('etcd member e1 killed: both hosts allocate (quorum: 2 of 3)');
  await e1.kill();
  const tFail = t();
  const runs = await Promise.all([h1, h2].flatMap((h) => [0, 1].map((i) => h.cli(['mac', 'allocate', '--vm', `demo-${h.name}-${i}`]))));
  const ok = runs.filter((r) => r.code === 0);
  console.log(`   ${ok.length}/${runs.length} allocations succeeded in ${secs(tFail)}: ${ok.map((r) => r.stdout.trim()).join(' ')}`);
  for (const r of runs.filter((x) => x.code !== 0)) console.log(`   failed: ${r.stderr.trim()}`);
  if (ok.length !== runs.length) failed = true;
  const tRejoin = t();
  await e1.restart();
  console.log(`   e1 restarted and answering after ${secs(tRejoin)}`);
  for (const r of ok) await h1.cli(['mac', 'release', r.stdout.trim()]);

  say('stopping both VMs (SIGTERM to their launchers)');
  await stopAll();
  console.log(indent(`mac list: ${(await h1.cli(['mac', 'list'])).stdout}`));
  console.log(indent(`network rm 42 on h1: ${(await h1.cli(['network', 'rm', '42'])).stderr}`));
  say(`done in ${secs(tStart)} (guest boots included)${failed ? ' — WITH FAILURES (see above)' : ''}`);
} catch (err) {
  failed = true;
  console.error(`demo: ${err.message}`);
} finally {
  for (const l of launchers) l.child?.kill('SIGKILL');
  await cluster.remove();
}
process.exitCode = failed ? 1 : 0;
