import type { Config } from '@starling/core/config.ts';
import type { Logger } from '@starling/core/logger.ts';
import { Acl } from './acl.ts';
import { FlowControl } from './flow-control.ts';
import type { Connection } from './connection.ts';
import type { HubClient } from './hub-client.ts';
import type { Mesh } from '@starling/core/mesh.ts';
import { WorkerMetrics } from './metrics.ts';
import type { Session, Subscription } from './session.ts';
import { LocalSubscriptions } from './subscriptions.ts';

/** Everything a worker's handlers share, passed explicitly rather than reached through globals. */
export class WorkerContext {
  readonly config: Config;
  readonly workerId: number;
  readonly nodeId: string;
  readonly log: Logger;
  readonly subs = new LocalSubscriptions();
  readonly sessions = new Map<string, Session>();
  /** Sessions another node claimed, still subscribed and collecting until that node has taken over. */
  readonly collecting = new Map<string, Session>();
  readonly connections = new Map<number, Connection>();
  readonly acl: Acl;
  readonly metrics: WorkerMetrics;
  readonly mesh: Mesh;
  readonly hub: HubClient;
  readonly flow: FlowControl;
  /** Round-robin cursor per shared group across this worker's candidates. */
  readonly groupCursor = new Map<string, number>();
  shuttingDown = false;

  constructor(opts: { config: Config; workerId: number; nodeId: string; log: Logger; mesh: Mesh; hub: HubClient }) {
    this.config = opts.config;
    this.workerId = opts.workerId;
    this.nodeId = opts.nodeId;
    this.log = opts.log;
    this.mesh = opts.mesh;
    this.hub = opts.hub;
    this.acl = new Acl(opts.config.acl);
    this.flow = new FlowControl(opts.mesh, opts.config.limits.slowConsumerMs);
    this.metrics = new WorkerMetrics(opts.workerId, {
      connections: () => this.connections.size,
      subscriptions: () => {
        let n = 0;
        for (const s of this.sessions.values()) n += s.subscriptions.size;
        return n;
      },
      sessionsConnected: () => this.countSessions(true),
      sessionsOffline: () => this.countSessions(false),
      inflight: () => {
        let n = 0;
        for (const s of this.sessions.values()) n += s.inflight.size;
        return n;
      },
      queued: () => {
        let n = 0;
        for (const s of this.sessions.values()) n += s.queue.length;
        return n;
      },
    }, opts.config.metrics.enabled);
  }

  private countSessions(connected: boolean): number {
    let n = 0;
    for (const s of this.sessions.values()) if ((s.conn !== null) === connected) n++;
    return n;
  }

  /** Adds a subscription; resolves once every peer routes matching messages here. */
  subscribe(sub: Subscription): Promise<void> | null {
    sub.session.subscriptions.set(sub.fullFilter, sub);
    if (!this.subs.add(sub)) return null;
    return this.mesh.announce('add', sub.filter, sub.group);
  }

  unsubscribe(sub: Subscription): Promise<void> | null {
    sub.session.subscriptions.delete(sub.fullFilter);
    if (!this.subs.remove(sub)) return null;
    return this.mesh.announce('remove', sub.filter, sub.group);
  }

  /** Ends a session here: its subscriptions leave the mesh; queued messages go with it. */
  dropSession(session: Session): void {
    for (const sub of [...session.subscriptions.values()]) void this.unsubscribe(sub);
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
  }
}
