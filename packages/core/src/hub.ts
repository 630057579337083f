// The node's hub, on the main thread: the workers' door to the router (sessions, retained messages,
// wills, routes to other nodes). Never on the per-message path of a single node.
import type { Message, Router, SessionOwner, StoredWill } from '@starling/router';
import { TopicTrie, topicMatches } from '@starling/router';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import { Mesh } from './mesh.ts';
import { HUB, type ClaimResult, type DetachResult, type Envelope, type FromWorker, type HubRequest } from './thread-messages.ts';
import type { WorkerPool } from './worker-pool.ts';
import type { HubMetrics } from './hub-metrics.ts';
import { reasonInfo } from './disconnect-reasons.ts';
import { SessionHandover } from './cluster/handover.ts';

interface ConnRecord {
  workerId: number;
  clientId: string;
}

export class Hub {
  readonly mesh: Mesh;
  private readonly conns = new Map<number, ConnRecord>();
  private readonly nodeRoutes = new Map<string, number>();
  /** Remote nodes' routes (from the router), so envelopes to other nodes know which groups they serve. */
  private readonly remoteGroups = new TopicTrie<string>();
  private readonly willTimers = new Set<NodeJS.Timeout>();
  /** Retained messages that belong to this node alone ($SYS statistics): never in the router. */
  private readonly localRetained = new Map<string, Message>();
  /** Sessions moving between this node and others (claims across nodes). */
  private readonly handover: SessionHandover;
  /** Route announcements to the workers not yet acknowledged by all of them. */
  private readonly announcing = new Set<Promise<void>>();
  private readonly config: Config;
  private readonly router: Router;
  private readonly log: Logger;
  private readonly metrics: HubMetrics;
  pool!: WorkerPool;

  constructor(opts: { config: Config; router: Router; log: Logger; metrics: HubMetrics }) {
    this.config = opts.config;
    this.router = opts.router;
    this.log = opts.log;
    this.metrics = opts.metrics;
    // QoS 0 to other nodes (QoS 1/2 come as 'forward' requests): at most once. One that cannot be routed
    // (Redis away) is counted by the router (starling_redis_errors_total), not logged per message.
    this.mesh = new Mesh(HUB, (_from, batch) => void this.toOtherNodes(batch).catch(() => undefined));
    this.mesh.beforeAck = (op, filter, group) => this.nodeRoute(op, filter, group);
    this.handover = new SessionHandover({
      router: this.router,
      log: this.log,
      command: (workerId, cmd) => this.pool.command(workerId, cmd),
      flush: (workerId) => this.mesh.flushNow(workerId),
      routesSettled: () => Promise.all([...this.announcing]).then(() => undefined),
      drainWorkers: () => this.mesh.barrier(),
      maxQueued: this.config.limits.maxQueued,
      // A dead node never answers: waits end when it is no longer live (missed heartbeats), within the
      // worker's own wait for the claim.
      answerMs: this.config.timeouts.requestMs / 2,
      // The claimer says 'resumed' once its worker restored the session, within its claim's wait.
      collectMs: this.config.timeouts.requestMs * 1.5,
    });
  }

  get nodeId(): string {
    return this.router.nodeId;
  }

  async start(): Promise<void> {
    await this.router.start({
      deliver: (message, groups, normal) => this.fromOtherNode(message, groups, normal),
      takeover: (clientId, owner, by) => {
        // Same-node takeovers are settled inside claim(); another node's claim ends ours here.
        if (by.nodeId === this.nodeId || owner.nodeId !== this.nodeId) return;
        void this.handover.takeover(clientId, owner, by);
      },
      handedOver: (signal) => this.handover.signal(signal),
      routesChanged: (filter: string, group: string, present: boolean) => this.remoteRouteChanged(filter, group, present),
      nodeDown: (nodeId: string) => void this.nodeDown(nodeId),
    } as Parameters<Router['start']>[0]);
  }

  /** A worker joined: it learns the hub's routes (remote nodes), then waits for our sync-done. */
  workerJoined(workerId: number): void {
    this.mesh.addPeer(workerId, { postMessage: (m: unknown) => this.pool.send(workerId, m as never) }, false);
    const routes: Array<{ filter: string; group: string }> = [];
    for (const [filter, group] of this.remoteGroups.entries()) routes.push({ filter, group });
    this.mesh.syncTo(workerId, routes);
  }

  onWorkerMessage(workerId: number, msg: FromWorker): void {
    if (this.mesh.receive(workerId, msg as never)) return;
    if (msg.t === 'req') {
      this.handle(workerId, msg.req).then(
        (value) => msg.id !== 0 && this.pool.send(workerId, { t: 'res', id: msg.id, value }),
        (err: Error) => {
          if (msg.id !== 0) this.pool.send(workerId, { t: 'res', id: msg.id, error: err.message });
          else this.log.warn({ op: msg.req.op, err: err.message }, 'worker request failed');
        },
      );
    } else if (msg.t === 'conn-end') {
      this.conns.delete(msg.connId);
    }
  }

  private owner(workerId: number, connId: number): SessionOwner {
    return { nodeId: this.nodeId, workerId, connId };
  }

  private async handle(workerId: number, req: HubRequest): Promise<unknown> {
    switch (req.op) {
      case 'claim':
        return this.claim(workerId, req.clientId, req.connId, req.cleanStart, req.will);
      case 'release': {
        if (req.offline) return undefined; // the worker keeps it; ownership stays so a claim finds it
        await this.router.releaseSession(req.clientId, this.owner(workerId, req.connId));
        await this.router.deleteSession(req.clientId);
        return undefined;
      }
      case 'save-session':
        return this.router.saveSession(req.session);
      case 'delete-session':
        await this.router.deleteSession(req.clientId);
        return undefined;
      case 'retained-get': {
        const stored = await this.router.getRetained(req.filter);
        const local = [...this.localRetained.values()].filter((m) => topicMatches(req.filter, m.topic));
        return local.length > 0 ? [...stored, ...local] : stored;
      }
      case 'retained-set':
        return this.router.setRetained(req.message);
      case 'will-publish':
        return this.scheduleWill(req.clientId, this.owner(workerId, req.connId), req.delayMs, 'connection_lost');
      case 'will-clear':
        await this.router.clearWill(req.clientId, this.owner(workerId, req.connId));
        return undefined;
      case 'forward':
        return this.toOtherNodes([req.envelope]);
      case 'resumed':
        return this.handover.resumed(workerId, this.owner(workerId, req.connId), req.clientId);
    }
  }

  /** CONNECT: take the session over from wherever it is, hand its state to the new connection. */
  private async claim(workerId: number, clientId: string, connId: number, cleanStart: boolean, will: StoredWill | null): Promise<ClaimResult> {
    const owner = this.owner(workerId, connId);
    // A move of this session to this node still in progress ends first (its tail belongs to it).
    await this.handover.settled(clientId);
    // Registered before the claim: the previous owner's node may answer before the claim's reply is here.
    const state = this.handover.expectState(clientId, owner);
    const claim = await this.router.claimSession(clientId, owner, cleanStart).catch((err: unknown) => {
      state.cancel();
      throw err;
    });
    const result: ClaimResult = { session: null, queue: [], tookOver: false };
    const prev = claim.previous;
    const remote = prev !== undefined && prev.nodeId !== this.nodeId;
    if (!remote) state.cancel();
    if (remote) {
      // Held on another node: it answers with the session's state (cluster/handover.ts). Its answer also
      // orders its writes (the queue) before ours (a clean start's delete below).
      await this.handover.claimed(state.wait, clientId, owner, prev, claim.stored, cleanStart, result);
    } else if (prev && this.pool.workers.has(prev.workerId)) {
      const d = await this.detach(prev, clientId, !cleanStart);
      result.tookOver = true;
      result.session = d.session;
      result.queue = d.queue;
    } else if (claim.stored && !cleanStart) {
      // Resumed from the router: another node, a crashed worker, or a previous life of this node.
      result.session = claim.stored;
      result.queue = await this.router.takeQueue(clientId);
      result.tookOver = prev !== undefined;
    }
    if (cleanStart) await this.router.deleteSession(clientId);
    // A new connection cancels a pending delayed will of the previous one [MQTT-3.1.2-8].
    await this.router.clearWill(clientId);
    if (will) await this.router.setWill(will);
    this.conns.set(connId, { workerId, clientId });
    return result;
  }

  private detach(owner: SessionOwner, clientId: string, keepSession: boolean): Promise<DetachResult> {
    return this.pool.command<DetachResult>(owner.workerId, { op: 'detach', clientId, connId: owner.connId, keepSession });
  }

  private scheduleWill(clientId: string, owner: SessionOwner, delayMs: number, cause: string): Promise<void> {
    if (delayMs <= 0) return this.publishWill(clientId, owner, cause);
    const timer = setTimeout(() => {
      this.willTimers.delete(timer);
      void this.publishWill(clientId, owner, cause).catch((err: Error) => this.log.warn({ clientId, err: err.message }, 'will publish failed'));
    }, delayMs);
    this.willTimers.add(timer);
    return Promise.resolve();
  }

  /** Claims the will (exactly once cluster-wide) and publishes it, unless a newer connection replaced it. */
  private async publishWill(clientId: string, owner: SessionOwner | null, cause: string): Promise<void> {
    const will = await this.router.claimWill(clientId);
    if (!will) {
      this.log.debug({ clientId, cause }, 'will not published: cleared meanwhile');
      return;
    }
    if (owner && (will.owner.nodeId !== owner.nodeId || will.owner.workerId !== owner.workerId || will.owner.connId !== owner.connId)) {
      // Belongs to a newer connection: put it back.
      await this.router.setWill(will);
      this.log.debug({ clientId, cause }, 'will not published: the client connected again');
      return;
    }
    await this.publish({ ...will.message, receivedAt: Date.now() });
    this.metrics.willsPublished.inc({ cause });
  }

  /** Publishes to this node's subscribers only, kept as retained on this node when flagged ($SYS). */
  publishLocal(message: Message): void {
    if (message.retain) this.localRetained.set(message.topic, message);
    this.fromOtherNode(message, [], true);
  }

  /** Publishes a message originating in the hub (wills) as if a client had. */
  async publish(message: Message): Promise<void> {
    if (message.retain) await this.router.setRetained(message);
    const workerId = this.pool.anyWorker();
    if (workerId !== null) await this.pool.command(workerId, { op: 'publish', message });
    else await this.toOtherNodes([{ m: message, normal: true, groups: null }]);
  }

  /** A worker crashed: publish its connections' wills, keep its persistent sessions alive elsewhere. */
  async workerCrashed(workerId: number, connIds: number[]): Promise<void> {
    // Its routes go (from other nodes too, unless another worker has them), and nothing waits for its
    // answers (announcements, barriers) any more.
    const gone: Array<[string, string]> = [];
    for (const [filter, route] of this.mesh.routes.entries()) if (route.peer === workerId) gone.push([filter, route.group]);
    this.mesh.removePeer(workerId);
    for (const [filter, group] of gone) void this.nodeRoute('remove', filter, group);
    // The crashed worker cannot classify its connections' ends: the main thread does, once each. One
    // error line (the pool's 'worker exited') is what an operator acts on; per connection, debug.
    this.metrics.disconnects.inc({ reason: 'worker_crash', initiator: reasonInfo('worker_crash').initiator }, connIds.length);
    for (const connId of connIds) {
      const rec = this.conns.get(connId);
      this.conns.delete(connId);
      this.log.debug({ worker: workerId, conn: connId, clientId: rec?.clientId ?? null, reason: 'worker_crash', initiator: 'server' }, 'connection closed');
      if (!rec) continue;
      const owner = this.owner(workerId, connId);
      await this.publishWill(rec.clientId, owner, 'worker_crash').catch(() => undefined);
      // A router failure for one session must not cost the remaining connections their wills.
      await this.router.releaseSession(rec.clientId, owner).catch((err: Error) => this.log.warn({ clientId: rec.clientId, err: err.message }, 'release after crash failed'));
    }
    const { adopted, target } = await this.adoptOfflineSessions();
    this.log.info({ worker: workerId, connections: connIds.length, sessions: adopted, to: target }, 'recovered from worker crash');
  }

  /**
   * Persistent sessions stored and owned by nobody (their worker crashed, their node died) continue
   * offline in a worker of this node, subscribed, so messages published meanwhile are queued for them.
   * The adopting worker owns them (connection 0: none): a reconnecting client's claim, on any node,
   * detaches the session from there with its queue. Each is adopted only if still unowned, so a client
   * that reconnected meanwhile keeps its connection.
   */
  private async adoptOfflineSessions(): Promise<{ adopted: number; target: number | null }> {
    const target = this.pool.anyWorker();
    if (target === null) return { adopted: 0, target };
    const sessions = [];
    for (const s of await this.router.offlineSessions()) {
      const stored = await this.router.adoptSession(s.clientId, this.owner(target, 0)).catch(() => null);
      if (stored) sessions.push(stored);
    }
    if (sessions.length === 0) return { adopted: 0, target };
    const ok = await this.pool.command(target, { op: 'adopt', sessions }).then(() => true, () => false);
    if (!ok) {
      // Not held anywhere after all: leave them unowned, resumable from the stored copy.
      for (const s of sessions) await this.router.releaseSession(s.clientId, this.owner(target, 0)).catch(() => undefined);
      return { adopted: 0, target };
    }
    return { adopted: sessions.length, target };
  }

  /** Another node died (or this node's previous life): publish its clients' wills, each once cluster-wide,
   *  and keep its persistent sessions subscribed here. */
  private async nodeDown(nodeId: string): Promise<void> {
    // This node's own previous life is reported right after start: let the workers come up first.
    await this.pool.whenAllReady();
    const wills = await this.router.willsOf(nodeId).catch((err: Error) => {
      this.log.warn({ dead: nodeId, err: err.message }, 'reading the wills of a dead node failed');
      return [];
    });
    for (const will of wills) {
      // The Will Delay Interval counts from the end of the connection, which is about now. A client that
      // reconnects meanwhile replaces the will (claim), and the owner check then leaves it alone.
      await this.scheduleWill(will.clientId, will.owner, will.delayMs ?? 0, 'node_down').catch((err: Error) => this.log.warn({ clientId: will.clientId, err: err.message }, 'will of dead node failed'));
    }
    const { adopted, target } = await this.adoptOfflineSessions().catch((err: Error) => {
      this.log.warn({ dead: nodeId, err: err.message }, 'adopting the sessions of a dead node failed');
      return { adopted: 0, target: null };
    });
    this.log.info({ dead: nodeId, wills: wills.length, sessions: adopted, to: target }, 'took over after a dead node');
  }

  // --- Routes and messages between this node and the others ----------------------------------------

  private nodeRoute(op: 'add' | 'remove', filter: string, group: string): Promise<void> | null {
    const key = `${group}\u0000${filter}`;
    const n = this.nodeRoutes.get(key) ?? 0;
    if (op === 'add') {
      this.nodeRoutes.set(key, n + 1);
      return n === 0 ? this.router.addRoute(filter, group || undefined).catch((err: Error) => this.log.warn({ filter, err: err.message }, 'route add failed')) : null;
    }
    if (n <= 1) {
      this.nodeRoutes.delete(key);
      return n === 1 ? this.router.removeRoute(filter, group || undefined).catch((err: Error) => this.log.warn({ filter, err: err.message }, 'route remove failed')) : null;
    }
    this.nodeRoutes.set(key, n - 1);
    return null;
  }

  private remoteRouteChanged(filter: string, group: string, present: boolean): void {
    if (present) this.remoteGroups.add(filter, group);
    else this.remoteGroups.remove(filter, group);
    const announced = this.mesh.announce(present ? 'add' : 'remove', filter, group);
    this.announcing.add(announced);
    void announced.then(() => this.announcing.delete(announced));
  }

  /** Envelopes workers sent to the hub go to other nodes; groups served on this node are skipped there. */
  private async toOtherNodes(batch: Envelope[]): Promise<void> {
    await Promise.all(
      batch.map((e) => {
        const served = new Set<string>();
        this.remoteGroups.match(e.m.topic, (group) => {
          if (group !== '') served.add(group);
        });
        // remoteGroups holds group names; chosen keys are `group/filter`.
        const chosen = new Set((e.groups ?? []).map((k) => k.slice(0, k.indexOf('/'))));
        for (const g of [...served]) if (chosen.has(g)) served.delete(g);
        const servedKeys = new Set<string>();
        for (const [filter, group] of this.remoteGroups.entries()) if (group !== '' && served.has(group)) servedKeys.add(`${group}/${filter}`);
        return this.router.publish(e.m, servedKeys);
      }),
    );
  }

  /** A message from another node: to the workers with matching routes, one member per chosen group. */
  private fromOtherNode(message: Message, groups: readonly string[], normal: boolean): void {
    const targets = new Map<number, Envelope>();
    this.mesh.routes.match(message.topic, (route) => {
      if (route.group !== '' || !normal) return;
      if (!targets.has(route.peer)) targets.set(route.peer, { m: message, normal: true, groups: null });
    });
    for (const key of groups) {
      const candidates: number[] = [];
      this.mesh.routes.match(message.topic, (route) => {
        if (route.group !== '' && `${route.group}/${route.filter}` === key && !candidates.includes(route.peer)) candidates.push(route.peer);
      });
      if (candidates.length === 0) continue;
      const peer = candidates[Math.floor(Math.random() * candidates.length)]!;
      const env = targets.get(peer) ?? { m: message, normal: false, groups: [] };
      (env.groups ??= []).push(key);
      targets.set(peer, env);
    }
    for (const [peer, env] of targets) this.mesh.send(peer, env);
  }

  stop(): void {
    for (const t of this.willTimers) clearTimeout(t);
    this.handover.stop();
  }
}
