/**
 * `uncloud-vm agent`: one resident process per host for the etcd store. It holds the etcd lease the host's
 * running VMs hang on and keeps it alive; if the host dies, the lease expires after its TTL and the
 * addresses return to the pool. If the lease is lost (etcd gone longer than the TTL), it takes a new one
 * and hangs the live leases on it again.
 */
import { UncloudError, usageError } from '../../core/errors.js';
import { parseStore } from '../../core/store-url.js';
import type { Lease as EtcdLease } from 'etcd3';
import type { HostAgent } from '../../store/etcd-host-lease.js';
import { systemdExecWord, systemdValue } from '../../core/quote.js';
import { AGENT_UNIT } from '../../system/systemd.js';
import { loadTemplate, render } from '../../system/templates.js';
import type { Context } from '../context.js';
import { selfCommand } from '../self.js';
import { printOrInstallUnit, unitEnvironment } from './shared/unit-environment.js';
import type { Command } from 'commander';
import type { Action } from './shared/action.js';

export function define(program: Command, action: Action): void {
  program
    .command('agent')
    .description('etcd store: keep this host\'s lease alive (one resident process per host)')
    .option('--unit', 'print a systemd unit for the agent instead of running it')
    .option('--user', 'with --unit: a user unit')
    .option('--install', 'with --unit: write it and reload systemd')
    .option('--enable', 'with --install: enable and start it')
    .addHelpText(
      'after',
      `
With the etcd store, the addresses of this host's running VMs hang on one etcd lease per host with a TTL
(?ttl= in the store URL, 30 s by default). The agent keeps it alive; if the host dies, its VMs' addresses
return to the pool after the TTL. VMs under systemd and detached VMs need the agent; a foreground start
without one keeps a lease of its own alive.

Examples:
  uncloud-vm --store etcd://10.0.0.1:2379 agent
  uncloud-vm --store etcd://10.0.0.1:2379 agent --unit --install --enable`,
    )
    .action(action((_a, o, ctx) => agent(o, ctx)));
}


export interface AgentFlags {
  unit?: boolean;
  user?: boolean;
  install?: boolean;
  enable?: boolean;
}

export async function agent(flags: AgentFlags, ctx: Context): Promise<number> {
  const target = parseStore(ctx.settings.store);
  if (target.kind !== 'etcd') {
    throw usageError("the agent is for the etcd store: pass --store etcd://host:port (the file store needs no agent)");
  }
  if (flags.unit) return agentUnit(flags, ctx);
  if (flags.install || flags.enable || flags.user) throw usageError('--user, --install and --enable go with --unit');
  const { openHostAgent } = await import('../../store/open-store.js');
  const { runningLeases } = await import('../../qemu/reconcile.js');
  const { conflictMessage } = await import('../../store/policy.js');
  const host = await openHostAgent(ctx.settings);
  const expected = () => runningLeases(ctx.settings.runDir, ctx.settings.host);
  let stopping = false;
  let current: Awaited<ReturnType<HostAgent['takeLease']>> | undefined;
  const reported = new Set<string>();
  /** Cut the loop's wait short (a lost lease, a signal). */
  let wake = (): void => undefined;

  /** Re-assert this host's running VMs' keys on the current lease; say each new conflict once. */
  const assert = async (id: string, why: string): Promise<void> => {
    const r = await host.reassert(id, expected());
    if (why !== 'periodic' || r.recreated.length > 0) {
      ctx.err(`agent: host ${host.host} holds etcd lease ${id} in ${host.where}; ${r.kept} running VM lease(s) asserted (${r.recreated.length} created again)${why === 'periodic' ? '' : ` (${why})`}`);
    }
    const now = new Set(r.conflicts.map((c) => c.mac));
    for (const c of r.conflicts) if (!reported.has(c.mac)) ctx.err(`agent: ${conflictMessage(c)}`);
    reported.clear();
    for (const m of now) reported.add(m);
  };

  const watch = (l: EtcdLease): void => {
    let failing = false;
    l.on('keepaliveFailed', () => {
      if (!failing) ctx.err(`agent: etcd unreachable (${host.where}); VMs keep running, keep-alive resumes when etcd is back`);
      failing = true;
    });
    l.on('keepaliveSucceeded', () => {
      if (failing) ctx.err('agent: keep-alive resumed');
      failing = false;
    });
    l.on('lost', (err: Error) => {
      if (stopping || current?.lease !== l) return;
      ctx.err(`agent: lease lost (${err.message}); taking a new one and re-asserting this host's running VMs`);
      wake();
    });
  };

  /**
   * One pass: take a lease if there is none or it was lost, else put the host key back if it is gone; then hang
   * what runs here on the current lease. Passes run one after another, never side by side: a pass still
   * writing with a lost lease's id after the new lease took the keys would hang them back on the lost lease,
   * and they would vanish when it expires.
   */
  const pass = async (why: string): Promise<void> => {
    if (!current || current.lease.revoked()) {
      const next = await host.takeLease();
      current?.lease.removeAllListeners();
      current = next;
      watch(next.lease);
    } else {
      const again = await host.ensureAnnounced(current);
      if (again?.why === 'another agent') {
        const who = `pid ${again.pid ?? '?'}${again.started ? `, started ${again.started}` : ''}, etcd lease ${again.leaseId}`;
        ctx.err(`agent: another agent announced host ${host.host} (${who}); one agent runs per host, two take its VMs' keys from each other: stop one (one on another machine needs a host name of its own: UNCLOUD_VM_HOST or "host" in the config). Announced again`);
      } else if (again) ctx.err(`agent: the key of host ${host.host} was missing or damaged; announced again`);
    }
    await assert(current.id, why);
  };

  // Level-triggered: every few seconds, what runs here is asserted again (keys that vanished come back;
  // conflicts that cleared are cleared).
  const periodS = Math.max(2, Math.floor(target.ttlS / 3));
  const loop = (async () => {
    let why = 'start';
    let lastError = '';
    while (!stopping) {
      if (why === 'periodic' && current?.lease.revoked()) why = 'after a lost lease';
      let waitMs = periodS * 1000;
      try {
        await pass(why);
        why = 'periodic';
        lastError = '';
      } catch (e) {
        if (stopping) break;
        // Without a live lease, soon again: the lost lease's keys outlive it by about one TTL once etcd is back.
        const leaseless = !current || current.lease.revoked();
        waitMs = leaseless ? 500 : 2000;
        // Said once per kind of failure until a pass works again: while etcd is away the cause in the message
        // changes from try to try (which endpoint refused), and a line every half second would flood the journal.
        const msg = (e as Error).message;
        const kind = e instanceof UncloudError ? e.code : msg;
        if (kind !== lastError) ctx.err(`agent: ${msg}; retrying every ${waitMs / 1000} s`);
        lastError = kind;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, waitMs);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  })();
  await new Promise<void>((resolve) => {
    const onSignal = (): void => {
      stopping = true;
      wake();
      // The lease is not revoked: the VMs keep their addresses until the TTL, and a restarted agent takes them over.
      current?.lease.release();
      ctx.err('agent: stopped; running VMs keep their addresses for the lease TTL unless an agent takes them over');
      resolve();
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  await host.close();
  await loop;
  return 0;
}

function agentUnit(flags: AgentFlags, ctx: Context): number {
  if (flags.enable && !flags.install) throw usageError('--enable needs --install');
  const text = render(loadTemplate('uncloud-vm-agent.service'), { host: ctx.settings.host, wantedBy: flags.user ? 'default.target' : 'multi-user.target' }, systemdValue, {
    unitDeps: flags.user ? '' : 'After=network-online.target\nWants=network-online.target',
    agent: [...selfCommand(ctx.settings), 'agent'].map(systemdExecWord).join(' '),
    environment: unitEnvironment(ctx.settings),
  });
  const path = printOrInstallUnit(ctx, flags, AGENT_UNIT, text, flags.enable ? [['enable', '--now', AGENT_UNIT]] : []);
  if (path) ctx.err(`installed ${path}${flags.enable ? ' (enabled and started)' : ''}`);
  return 0;
}
