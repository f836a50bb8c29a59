/**
 * `uncloud-vm agent`: one resident process per host for the etcd store. It holds the etcd lease the host's
 * running VMs hang on and keeps it alive; if the host dies, the lease expires after its TTL and the
 * addresses return to the pool. If the lease is lost (etcd gone longer than the TTL), it takes a new one
 * and hangs the live leases on it again.
 */
import { UncloudError } from '../../core/errors.js';
import { parseStore } from '../../core/store-url.js';
import type { EtcdStore } from '../../store/etcd-store.js';
import { systemdExecWord, systemdValue } from '../../core/quote.js';
import { writeFileAtomic } from '../../system/atomic-file.js';
import { systemctl, unitDir } from '../../system/systemd.js';
import { loadTemplate, render } from '../../system/templates.js';
import type { Context } from '../context.js';
import { selfCommand } from '../self.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const AGENT_UNIT = 'uncloud-vm-agent.service';

export interface AgentFlags {
  unit?: boolean;
  user?: boolean;
  install?: boolean;
  enable?: boolean;
}

export async function agent(flags: AgentFlags, ctx: Context): Promise<number> {
  if (parseStore(ctx.settings.store).kind !== 'etcd') {
    throw new UncloudError('USAGE', "the agent is for the etcd store: pass --store etcd://host:port (the file store needs no agent)", 2);
  }
  if (flags.unit) return agentUnit(flags, ctx);
  if (flags.install || flags.enable || flags.user) throw new UncloudError('USAGE', '--user, --install and --enable go with --unit', 2);
  const store = (await ctx.store()) as EtcdStore;
  let stopping = false;
  let lease = await takeLease(store, ctx);
  const onSignal = (): void => {
    stopping = true;
    // The lease is not revoked: the VMs keep their addresses until the TTL, and a restarted agent takes them over.
    lease.release();
    store.client.close();
    ctx.err('agent: stopped; running VMs keep their addresses for the lease TTL unless an agent takes them over');
    process.exitCode = 0;
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await new Promise<void>((resolve) => {
    const watch = (l: ReturnType<EtcdStore['grantAgentLease']>): void => {
      let failing = false;
      l.on('keepaliveFailed', () => {
        if (!failing) ctx.err(`agent: etcd unreachable (${store.where}); VMs keep running, keep-alive resumes when etcd is back`);
        failing = true;
      });
      l.on('keepaliveSucceeded', () => {
        if (failing) ctx.err('agent: keep-alive resumed');
        failing = false;
      });
      l.on('lost', (err) => {
        if (stopping) return;
        ctx.err(`agent: lease lost (${err.message}); taking a new one`);
        void (async () => {
          for (;;) {
            try {
              lease = await takeLease(store, ctx);
              watch(lease);
              return;
            } catch (e) {
              ctx.err(`agent: ${(e as Error).message}; retrying in 2 s`);
              await new Promise((r) => setTimeout(r, 2000));
            }
          }
        })();
      });
    };
    watch(lease);
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  return 0;
}

/** Grant a lease, announce it under hosts/<host>, and hang this host's live leases on it. */
async function takeLease(store: EtcdStore, ctx: Context) {
  const lease = store.grantAgentLease();
  const id = await store.call('lease grant', () => lease.grant());
  await store.call('announce', () =>
    lease.put(store.hostKey()).value(JSON.stringify({ leaseId: id, pid: process.pid, started: new Date().toISOString() })).exec(),
  );
  const r = await store.reattachLive(id);
  ctx.err(`agent: host ${store.host} holds etcd lease ${id} in ${store.where}; ${r.kept} live lease(s) attached`);
  for (const l of r.lost) ctx.err(`agent: MAC ${l.mac} of VM ${l.vm?.name ?? '?'} was taken by another host while this host's lease was lost`);
  return lease;
}

function agentUnit(flags: AgentFlags, ctx: Context): number {
  if (flags.enable && !flags.install) throw new UncloudError('USAGE', '--enable needs --install', 2);
  const text = render(loadTemplate('uncloud-vm-agent.service'), { host: ctx.settings.host, wantedBy: flags.user ? 'default.target' : 'multi-user.target' }, systemdValue, {
    unitDeps: flags.user ? '' : 'After=network-online.target\nWants=network-online.target',
    agent: [...selfCommand(ctx.settings), 'agent'].map(systemdExecWord).join(' '),
  });
  if (!flags.install) {
    ctx.out(text.trimEnd());
    return 0;
  }
  const dir = unitDir(flags.user ?? false);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileAtomic(join(dir, AGENT_UNIT), text, 0o644);
  systemctl(flags.user ?? false, 'daemon-reload');
  if (flags.enable) systemctl(flags.user ?? false, 'enable', '--now', AGENT_UNIT);
  ctx.err(`installed ${join(dir, AGENT_UNIT)}${flags.enable ? ' (enabled and started)' : ''}`);
  return 0;
}
