/**
 * The etcd lease this host's running VMs hang on: the agent's when one runs (announced under hosts/<host>),
 * else one of this process's own, kept alive while it runs and revoked when it closes. If this process's own
 * lease is lost, it takes a new one and re-asserts the leases it took for running VMs (etcd-host-lease.ts).
 */
import type { Lease as EtcdLease } from 'etcd3';
import { UncloudError } from '../core/errors.js';
import type { EtcdConn } from './etcd-client.js';
import { grantDeadlineMs, reassert } from './etcd-host-lease.js';
import { conflictMessage } from './policy.js';
import type { Lease } from './store.js';

export interface OwnLeaseOptions {
  /** Refuse ephemeral leases without a running agent (systemd units and detached VMs need one). */
  requireAgent?: boolean;
  /** Told when the keep-alive of this process's own etcd lease fails or recovers. */
  onLeaseTrouble?: (msg: string) => void;
}

export class HostLeaseSource {
  private ownLease: EtcdLease | undefined;
  private ownLeaseId: Promise<string> | undefined;
  private closed = false;

  constructor(
    private readonly c: EtcdConn,
    private readonly opts: OwnLeaseOptions,
    /** The leases this process took for running VMs: re-asserted if its own etcd lease is lost. */
    private readonly heldHere: () => Lease[],
  ) {}

  async id(): Promise<string> {
    const c = this.c;
    const agent = await c.call('agent lookup', () => c.client.get(c.hostKey()).string());
    if (agent !== null) {
      try {
        const id = (JSON.parse(agent) as { leaseId?: string }).leaseId;
        if (typeof id === 'string' && id !== '') return id;
      } catch {
        // an unreadable agent record: fall through
      }
    }
    if (this.opts.requireAgent) {
      throw new UncloudError(
        'NO_AGENT',
        `${c.where}: no 'uncloud-vm agent' runs for host ${c.host}; VMs under systemd or detached need it to keep their leases alive (start it, e.g. with 'uncloud-vm agent --unit --install --enable')`,
      );
    }
    if (!this.ownLeaseId) {
      const trouble = (msg: string) => this.opts.onLeaseTrouble?.(`${c.where}: ${msg}`);
      const lease = c.client.lease(c.ttlS, { deadline: Date.now() + grantDeadlineMs(c.ttlS) });
      this.ownLease = lease;
      // Once per outage: the client retries every 0.1 s, and a line per try would flood the launcher's log.
      let failing = false;
      lease.on('keepaliveFailed', () => {
        if (!failing) trouble('keep-alive failed; retrying (the VM keeps running)');
        failing = true;
      });
      lease.on('keepaliveSucceeded', () => {
        if (failing) trouble('keep-alive resumed');
        failing = false;
      });
      lease.on('lost', (err) => {
        if (this.closed || this.ownLease !== lease) return;
        trouble(`lease lost (${err.message}); taking a new one`);
        this.ownLeaseId = undefined;
        void this.retake(trouble);
      });
      const granted = c.call('lease grant', () => lease.grant());
      this.ownLeaseId = granted;
      // A grant that failed is tried again by the next caller, not handed out as a failure forever.
      granted.catch(() => {
        if (this.ownLeaseId === granted) this.ownLeaseId = undefined;
      });
    }
    return this.ownLeaseId;
  }

  /**
   * After a lost lease: a new one, and this process's running VMs' keys hung on it, tried every half second
   * until it works (etcd may still be away). The lost lease's keys live on for about one TTL once etcd is
   * back; a VM whose key expired meanwhile gets it created again, or a conflict is reported.
   */
  private async retake(trouble: (msg: string) => void): Promise<void> {
    let last = '';
    while (!this.closed) {
      try {
        const r = await reassert(this.c, await this.id(), this.heldHere());
        trouble(`leases re-asserted (${r.kept} kept, ${r.recreated.length} created again, ${r.conflicts.length} taken by others meanwhile)`);
        for (const x of r.conflicts) this.opts.onLeaseTrouble?.(conflictMessage(x));
        return;
      } catch (e) {
        const msg = (e as Error).message;
        if (msg !== last) trouble(`could not re-attach leases: ${msg}; retrying every 0.5 s`);
        last = msg;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /** This process's own lease ends with it: whatever still hangs on it is given up at once, not after the TTL. */
  async revoke(): Promise<void> {
    this.closed = true;
    if (this.ownLease) await this.ownLease.revoke().catch(() => undefined);
  }
}
