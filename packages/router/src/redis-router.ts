// The Router contract over Redis: routes replicated to every node through pub/sub, deliveries batched
// into one PUBLISH per target node per event-loop turn, retained messages, sessions and wills in keys
// under one hash tag, changed atomically by Lua scripts.

import { EventEmitter } from 'node:events';
import type { NodeHandlers, Router } from './contract.ts';
import { RouteAcks } from './route-acks.ts';
import { RouteReplica } from './route-replica.ts';
import { connectClient, createClient, runScript } from './redis-connection.ts';
import type { RedisClient, RedisConnectionOptions, ScriptArg } from './redis-connection.ts';
import {
  FRAME_ACK,
  FRAME_DELIVER,
  FRAME_HANDOVER,
  FRAME_TAKEOVER,
  controlFrame,
  controlValue,
  decodeDeliveries,
  decodeMessage,
  deliveryFrame,
  encodeDelivery,
  encodeMessage,
  fromJson,
  ownerKey,
  parseOwner,
  toJson,
} from './redis-codec.ts';
import { parseRouteMember, redisKeys, routeMember } from './redis-keys.ts';
import type { RedisKeys } from './redis-keys.ts';
import { Membership } from './redis-membership.ts';
import { sessionExpiresAt } from './session-expiry.ts';
import { topicMatches } from './topic.ts';
import type { HandoverSignal, Message, SessionClaim, SessionOwner, StoredSession, StoredWill } from './types.ts';

/** Pino-compatible: (bindings, message). */
export interface RouterLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface RedisRouterOptions extends RedisConnectionOptions {
  nodeId: string;
  /** Every key is `{name}:...` with name from the prefix (default 'starling:'), channels `name:...`. */
  keyPrefix?: string;
  heartbeatMs?: number;
  /** A node whose heartbeat is older than this is dead. */
  nodeTtlMs?: number;
  /** How long addRoute/removeRoute wait for every live node's acknowledgement before resolving anyway. */
  routeAckTimeoutMs?: number;
  /** How long start() waits for Redis. */
  connectTimeoutMs?: number;
  logger?: RouterLogger;
}

export interface RedisRouterStatus {
  /** Both connections (commands, subscriptions) are ready. */
  connected: boolean;
  /** Router operations that failed because of Redis (unreachable, timeout, error reply). */
  commandErrors: number;
  /** Messages delivered here by other nodes. */
  messagesIn: number;
  /** Messages handed to Redis for other nodes (one per target node). */
  messagesOut: number;
  /** PUBLISH commands that carried messagesOut (one per target node per event-loop turn, split at 1 MiB). */
  batchesOut: number;
  /** Route changes that resolved without every live node's acknowledgement. */
  routeAckTimeouts: number;
  /** Times the connection came back after a loss. */
  reconnects: number;
  /** Other nodes currently seen alive. */
  liveNodes: number;
}

type RouteOp = ['+' | '-', string, string];
type RouteMessage =
  | { t: 'ops'; n: string; s: number; ops: RouteOp[] }
  | { t: 'reset'; n: string; s: number; routes: Array<[string, string]> }
  /** `by`: the node that reaped n (absent when n left by itself). */
  | { t: 'down'; n: string; s: number; by?: string };

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

/** Deliveries to one node in one turn are split into frames of about this size. */
const MAX_FRAME_BYTES = 1 << 20;

const silent: RouterLogger = { info() {}, warn() {}, error() {} };

export class RouterUnavailableError extends Error {
  readonly code = 'ROUTER_UNAVAILABLE';
}

export class RedisRouter extends EventEmitter implements Router {
  readonly nodeId: string;
  private readonly options: RedisRouterOptions;
  private readonly keys: RedisKeys;
  private readonly membership: Membership;
  private readonly log: RouterLogger;
  private readonly heartbeatMs: number;
  private readonly stats: RedisRouterStatus = {
    connected: false,
    commandErrors: 0,
    messagesIn: 0,
    messagesOut: 0,
    batchesOut: 0,
    routeAckTimeouts: 0,
    reconnects: 0,
    liveNodes: 0,
  };

  private state: 'idle' | 'starting' | 'running' | 'closed' = 'idle';
  private handlers: NodeHandlers | null = null;
  private cmd: RedisClient | null = null;
  private sub: RedisClient | null = null;
  private timer: NodeJS.Timeout | null = null;

  private readonly replica: RouteReplica;
  /** This node's routes as route members: what it registers again after Redis comes back. */
  private readonly ownRoutes = new Set<string>();
  private pendingOps: string[] = [];
  private pendingOpWaiters: Waiter[] = [];
  private outbox = new Map<string, { parts: Buffer[]; count: number }>();
  private outboxWaiters: Waiter[] = [];
  private flushScheduled = false;
  private seq = 0;
  private readonly acks: RouteAcks;
  /** Other nodes alive as of the last heartbeat (or heard from since). */
  private live = new Set<string>();
  /** Event counter: route messages after a heartbeat reply was requested must not be undone by it. */
  private epoch = 0;
  private readonly heardAt = new Map<string, number>();
  /** Route announcements arriving while a snapshot loads; applied after it. */
  private buffered: RouteMessage[] | null = null;
  private syncing: Promise<void> | null = null;
  private resyncWanted = false;
  private ticking = false;

  constructor(options: RedisRouterOptions) {
    super();
    this.nodeId = options.nodeId;
    this.options = options;
    this.keys = redisKeys(options.keyPrefix ?? 'starling:');
    this.heartbeatMs = options.heartbeatMs ?? 1000;
    this.acks = new RouteAcks(options.routeAckTimeoutMs ?? 2000, () => this.stats.routeAckTimeouts++);
    this.membership = new Membership(this.nodeId, this.keys, options.nodeTtlMs ?? 5000);
    this.log = options.logger ?? silent;
    this.replica = new RouteReplica((filter, group, present) => this.callHandler('routesChanged', (h) => h.routesChanged?.(filter, group, present)));
  }

  /** A copy of the counters; 'status' events carry one whenever `connected` changes. */
  get status(): RedisRouterStatus {
    return { ...this.stats, liveNodes: this.live.size };
  }

  async start(handlers: NodeHandlers): Promise<void> {
    if (this.state !== 'idle') throw new Error('router already started');
    this.state = 'starting';
    this.handlers = handlers;
    const name = `starling:${this.nodeId}`;
    const cmd = (this.cmd = createClient(this.options, name, 'command'));
    const sub = (this.sub = createClient(this.options, `${name}:sub`, 'subscriber'));
    for (const client of [cmd, sub]) {
      // ioredis reports connection errors as events; the state changes are what gets logged.
      client.on('error', () => {});
      for (const event of ['ready', 'close', 'end', 'reconnecting']) client.on(event, () => this.connectionChanged());
    }
    sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel, message));
    let wills: number;
    try {
      const timeout = this.options.connectTimeoutMs ?? 10_000;
      await Promise.all([connectClient(cmd, timeout), connectClient(sub, timeout)]);
      await cmd.ping(); // surfaces authentication errors before anything else
      wills = await this.sync(true);
    } catch (err) {
      this.state = 'closed';
      cmd.disconnect();
      sub.disconnect();
      throw err;
    }
    this.state = 'running';
    // A connection lost during start() was not reported: let its return trigger registering again.
    this.stats.connected = cmd.status === 'ready' && sub.status === 'ready';
    this.timer = setInterval(() => void this.tick(), this.heartbeatMs);
    this.timer.unref();
    this.log.info({ nodeId: this.nodeId, nodes: this.live.size }, 'redis router started');
    // The previous life of this node id died with clients whose wills are still due.
    if (wills > 0) setImmediate(() => this.state === 'running' && this.callHandler('nodeDown', (h) => h.nodeDown?.(this.nodeId)));
  }

  async close(): Promise<void> {
    if (this.state === 'closed' || this.state === 'idle') {
      this.state = 'closed';
      return;
    }
    const wasRunning = this.state === 'running';
    this.state = 'closed';
    this.stopTimer();
    this.failPending(new Error('router closed'));
    const cmd = this.cmd!;
    const sub = this.sub!;
    if (wasRunning && cmd.status === 'ready') {
      try {
        // Wait for the others to drop this node's routes, so nothing is routed here after close().
        const seq = ++this.seq;
        const acked = this.acks.expect(seq, this.live);
        await this.membership.leave(cmd, JSON.stringify({ t: 'down', n: this.nodeId, s: seq } satisfies RouteMessage));
        await acked;
      } catch {
        // Redis is away: the others will reap this node when its heartbeat expires.
      }
    }
    this.acks.clear();
    await Promise.all([cmd.quit().catch(() => cmd.disconnect()), sub.quit().catch(() => sub.disconnect())]);
  }

  /** Test hook: dies like a crashed process, leaving heartbeat, routes, owners and wills behind. */
  kill(): void {
    this.state = 'closed';
    this.stopTimer();
    this.failPending(new Error('router killed'));
    this.acks.clear();
    this.cmd?.disconnect();
    this.sub?.disconnect();
  }

  // ---- routes ----

  addRoute(filter: string, group = ''): Promise<void> {
    const member = routeMember(filter, group);
    this.ownRoutes.add(member);
    return this.queueRouteOp(`+${member}`);
  }

  removeRoute(filter: string, group = ''): Promise<void> {
    const member = routeMember(filter, group);
    this.ownRoutes.delete(member);
    return this.queueRouteOp(`-${member}`);
  }

  isLive(nodeId: string): boolean {
    return nodeId === this.nodeId || this.live.has(nodeId);
  }

  hasRemoteRoute(topic: string): boolean {
    return this.replica.hasMatch(topic);
  }

  /** Route changes of one event-loop turn go out as one script call and one announcement. The intent is
   *  kept in ownRoutes even when Redis is away, and registered again when it is back. */
  private queueRouteOp(op: string): Promise<void> {
    if (this.state !== 'running') return Promise.reject(new Error('router not running'));
    this.pendingOps.push(op);
    const done = new Promise<void>((resolve, reject) => this.pendingOpWaiters.push({ resolve, reject }));
    this.scheduleFlush();
    return done;
  }

  private flushRouteOps(): void {
    const ops = this.pendingOps;
    const waiters = this.pendingOpWaiters;
    this.pendingOps = [];
    this.pendingOpWaiters = [];
    const seq = ++this.seq;
    const payload: RouteMessage = {
      t: 'ops',
      n: this.nodeId,
      s: seq,
      ops: ops.map((op) => [op[0] as '+' | '-', ...parseRouteMember(op.slice(1))]),
    };
    const acked = this.acks.expect(seq, this.live);
    this.command(() => runScript(this.cmd!, 'routeOps', [this.keys.routes(this.nodeId)], [this.keys.routeChannel, JSON.stringify(payload), ...ops]))
      .then(() => acked)
      .then(
        () => settle(waiters),
        (err: unknown) => {
          this.acks.finish(seq);
          settle(waiters, err);
        },
      );
  }

  // ---- publish ----

  publish(message: Message, servedGroups?: ReadonlySet<string>): Promise<void> {
    const targets = this.replica.targets(message.topic, servedGroups);
    if (targets.size === 0) return Promise.resolve();
    if (this.state !== 'running') return Promise.reject(new Error('router not running'));
    if (!this.stats.connected) {
      this.stats.commandErrors++;
      return Promise.reject(new RouterUnavailableError('redis unavailable: message not routed'));
    }
    const body = encodeMessage(message);
    for (const [node, target] of targets) {
      let box = this.outbox.get(node);
      if (!box) {
        box = { parts: [], count: 0 };
        this.outbox.set(node, box);
      }
      box.parts.push(...encodeDelivery(body, target.groups, target.normal));
      box.count++;
    }
    const done = new Promise<void>((resolve, reject) => this.outboxWaiters.push({ resolve, reject }));
    this.scheduleFlush();
    return done;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.state !== 'running') return this.failPending(new Error('router closed'));
      if (this.pendingOps.length > 0) this.flushRouteOps();
      if (this.outbox.size > 0) this.flushOutbox();
    });
  }

  private flushOutbox(): void {
    const outbox = this.outbox;
    const waiters = this.outboxWaiters;
    this.outbox = new Map();
    this.outboxWaiters = [];
    let count = 0;
    let frames = 0;
    this.command(async () => {
      const pipeline = this.cmd!.pipeline();
      for (const [node, box] of outbox) {
        const channel = this.keys.nodeChannel(node);
        // Frames stay small enough that one does not blow a subscriber's output buffer limit in Redis.
        let start = 0;
        let bytes = 0;
        for (let i = 0; i < box.parts.length; i += 2) {
          bytes += box.parts[i]!.length + box.parts[i + 1]!.length;
          if (bytes < MAX_FRAME_BYTES && i + 2 < box.parts.length) continue;
          pipeline.publish(channel, deliveryFrame(box.parts.slice(start, i + 2), (i + 2 - start) / 2));
          frames++;
          start = i + 2;
          bytes = 0;
        }
        count += box.count;
      }
      const results = (await pipeline.exec()) ?? [];
      for (const [err] of results) if (err) throw err;
    }).then(
      () => {
        this.stats.messagesOut += count;
        this.stats.batchesOut += frames;
        settle(waiters);
      },
      (err: unknown) => settle(waiters, err),
    );
  }

  // ---- retained ----

  async setRetained(message: Message): Promise<void> {
    const key = this.keys.retained;
    await this.command(() => (message.payload.length === 0 ? this.cmd!.hdel(key, message.topic) : this.cmd!.hset(key, message.topic, encodeMessage(message))));
  }

  async getRetained(filter: string): Promise<Message[]> {
    const key = this.keys.retained;
    const raw = await this.command(async () => {
      const cmd = this.cmd!;
      if (!filter.includes('+') && !filter.includes('#')) {
        const one = await cmd.hgetBuffer(key, filter);
        return one ? [one] : [];
      }
      const topics = (await cmd.hkeys(key)).filter((t) => topicMatches(filter, t));
      if (topics.length === 0) return [];
      return (await cmd.hmgetBuffer(key, ...topics)).filter((b): b is Buffer => b !== null);
    });
    const now = Date.now();
    const out: Message[] = [];
    const expired: string[] = [];
    for (const b of raw) {
      const m = decodeMessage(b);
      if (m.expiresAt !== undefined && m.expiresAt <= now) expired.push(m.topic);
      else out.push(m);
    }
    if (expired.length > 0) this.cmd!.hdel(key, ...expired).catch(() => {});
    return out;
  }

  retainedCount(): Promise<number> {
    return this.command(() => this.cmd!.hlen(this.keys.retained));
  }

  // ---- sessions ----

  async claimSession(clientId: string, owner: SessionOwner, cleanStart: boolean): Promise<SessionClaim> {
    const k = this.keys;
    const mine = ownerKey(owner);
    const keys = [k.session(clientId), k.queue(clientId), k.sessions, k.nodeSessions(owner.nodeId)];
    const args = [clientId, mine, cleanStart ? '1' : '0', this.nodeId, k.tag, k.nodeChannel(''), owner.nodeId];
    const [prev, stored] = (await this.command(() => runScript(this.cmd!, 'claimSession', keys, args))) as [string | null, string | null];
    const claim: SessionClaim = {};
    if (prev !== null && prev !== mine) {
      claim.previous = parseOwner(prev);
      // The script told a previous owner on another node; one on this node hears it here.
      if (claim.previous.nodeId === this.nodeId) {
        const previous = claim.previous;
        this.callHandler('takeover', (h) => h.takeover(clientId, previous, owner));
      }
    }
    if (stored !== null) claim.stored = fromJson<StoredSession>(stored);
    return claim;
  }

  async adoptSession(clientId: string, owner: SessionOwner): Promise<StoredSession | null> {
    const keys = [this.keys.session(clientId), this.keys.nodeSessions(owner.nodeId)];
    const raw = (await this.command(() => runScript(this.cmd!, 'adoptSession', keys, [ownerKey(owner), clientId]))) as string | null;
    return raw === null ? null : fromJson<StoredSession>(raw);
  }

  async releaseSession(clientId: string, owner: SessionOwner): Promise<boolean> {
    const keys = [this.keys.session(clientId), this.keys.nodeSessions(owner.nodeId)];
    return (await this.command(() => runScript(this.cmd!, 'releaseSession', keys, [ownerKey(owner), clientId]))) === 1;
  }

  async saveSession(session: StoredSession): Promise<void> {
    const k = this.keys;
    const expiresAt = sessionExpiresAt(session);
    const keys = [k.session(session.clientId), k.queue(session.clientId), k.sessions];
    await this.command(() => runScript(this.cmd!, 'saveSession', keys, [toJson(session), session.clientId, expiresAt === undefined ? '' : Math.floor(expiresAt)]));
  }

  async handOver(nodeId: string, signal: HandoverSignal): Promise<void> {
    // A session travels in the frame (JSON with byte arrays kept), not through the stored copy: saving
    // it would set an offline expiry on a session that is connected elsewhere now. Published on the
    // command connection after the deliveries queued so far, so it follows them.
    if (this.outbox.size > 0 && this.state === 'running') this.flushOutbox();
    await this.command(() => this.cmd!.publish(this.keys.nodeChannel(nodeId), Buffer.concat([Buffer.of(FRAME_HANDOVER), Buffer.from(toJson(signal))])));
  }

  async deleteSession(clientId: string): Promise<void> {
    const k = this.keys;
    await this.command(async () => {
      const results = await this.cmd!.multi().hdel(k.session(clientId), 'stored').del(k.queue(clientId)).srem(k.sessions, clientId).exec();
      for (const [err] of results ?? []) if (err) throw err;
    });
  }

  async enqueue(clientId: string, messages: Message[], limit: number): Promise<number> {
    if (messages.length === 0) return 0;
    const keys = [this.keys.session(clientId), this.keys.queue(clientId)];
    return (await this.command(() => runScript(this.cmd!, 'enqueue', keys, [limit, ...messages.map(encodeMessage)]))) as number;
  }

  async takeQueue(clientId: string): Promise<Message[]> {
    const key = this.keys.queue(clientId);
    const results = await this.command(() => this.cmd!.multi().lrangeBuffer(key, 0, -1).del(key).exec());
    const [err, items] = results?.[0] ?? [new Error('transaction aborted'), null];
    if (err) throw err;
    return (items as Buffer[]).map(decodeMessage);
  }

  async offlineSessions(): Promise<StoredSession[]> {
    const raw = (await this.command(() => runScript(this.cmd!, 'offlineSessions', [this.keys.sessions], [this.keys.tag]))) as string[];
    return raw.map((s) => fromJson<StoredSession>(s));
  }

  // ---- wills ----

  async setWill(will: StoredWill): Promise<void> {
    const k = this.keys;
    const keys = [k.will(will.clientId), k.nodeWills(will.owner.nodeId)];
    await this.command(() => runScript(this.cmd!, 'setWill', keys, [ownerKey(will.owner), toJson(will), will.clientId, k.tag, will.owner.nodeId]));
  }

  async clearWill(clientId: string, owner?: SessionOwner): Promise<boolean> {
    const args = [owner ? ownerKey(owner) : '', clientId, this.keys.tag, '0'];
    return (await this.command(() => runScript(this.cmd!, 'takeWill', [this.keys.will(clientId)], args))) === 1;
  }

  async claimWill(clientId: string): Promise<StoredWill | null> {
    const args = ['', clientId, this.keys.tag, '1'];
    const raw = (await this.command(() => runScript(this.cmd!, 'takeWill', [this.keys.will(clientId)], args))) as string | null;
    return raw === null ? null : fromJson<StoredWill>(raw);
  }

  async willsOf(nodeId: string): Promise<StoredWill[]> {
    const raw = (await this.command(() => runScript(this.cmd!, 'willsOf', [this.keys.nodeWills(nodeId)], [nodeId, this.keys.tag]))) as string[];
    return raw.map((s) => fromJson<StoredWill>(s));
  }

  // ---- plumbing ----

  /** Runs a Redis operation; fails at once while Redis is unreachable, and counts failures. */
  private async command<T>(op: () => Promise<T>): Promise<T> {
    if (this.state !== 'running' && this.state !== 'starting') throw new Error('router not running');
    if (this.cmd?.status !== 'ready') {
      this.stats.commandErrors++;
      throw new RouterUnavailableError('redis unavailable');
    }
    try {
      return await op();
    } catch (err) {
      this.stats.commandErrors++;
      throw err;
    }
  }

  private onMessage(channel: Buffer, message: Buffer): void {
    if (this.state === 'idle') return;
    if (channel.toString() === this.keys.routeChannel) {
      let parsed: RouteMessage;
      try {
        parsed = JSON.parse(message.toString()) as RouteMessage;
      } catch {
        return;
      }
      // A closing node still acknowledges, so nodes closing together do not wait out each other's timeout.
      if (this.state === 'closed') {
        this.ack(parsed);
        if (parsed.t === 'down') this.acks.forget(parsed.n);
      } else if (this.buffered) this.buffered.push(parsed);
      else this.applyRouteMessage(parsed);
      return;
    }
    if (this.state === 'closed') {
      if (message[0] === FRAME_ACK) this.ackFrame(message);
      return;
    }
    try {
      switch (message[0]) {
        case FRAME_DELIVER:
          decodeDeliveries(message, (m, groups, normal) => {
            this.stats.messagesIn++;
            this.callHandler('deliver', (h) => h.deliver(m, groups, normal));
          });
          break;
        case FRAME_ACK:
          this.ackFrame(message);
          break;
        case FRAME_TAKEOVER: {
          const { c, p, b } = controlValue<{ c: string; p: string; b: string }>(message);
          this.callHandler('takeover', (h) => h.takeover(c, parseOwner(p), parseOwner(b)));
          break;
        }
        case FRAME_HANDOVER: {
          const signal = fromJson<HandoverSignal>(message.toString('utf8', 1));
          this.callHandler('handedOver', (h) => h.handedOver?.(signal));
          break;
        }
      }
    } catch (err) {
      this.log.error({ nodeId: this.nodeId, err: String(err) }, 'redis router: undecodable frame');
    }
  }

  private applyRouteMessage(msg: RouteMessage): void {
    this.epoch++;
    if (msg.n === this.nodeId) {
      // Someone reaped this node while it was cut off: register again.
      if (msg.t === 'down' && msg.by !== undefined && this.state === 'running') this.resync();
      return;
    }
    this.heardAt.set(msg.n, this.epoch);
    switch (msg.t) {
      case 'ops':
        this.live.add(msg.n);
        for (const [op, filter, group] of msg.ops) {
          if (op === '+') this.replica.add(msg.n, filter, group);
          else this.replica.remove(msg.n, filter, group);
        }
        break;
      case 'reset':
        this.live.add(msg.n);
        this.replica.resetNode(msg.n, msg.routes);
        break;
      case 'down':
        this.live.delete(msg.n);
        this.replica.dropNode(msg.n);
        this.acks.forget(msg.n);
        // The reaper hears its own announcement after the routes are gone everywhere it matters first.
        if (msg.by === this.nodeId) this.callHandler('nodeDown', (h) => h.nodeDown?.(msg.n));
        break;
    }
    this.ack(msg);
  }

  private ack(msg: RouteMessage): void {
    if (msg.s === 0 || msg.n === this.nodeId || this.cmd?.status !== 'ready') return;
    this.cmd.publish(this.keys.nodeChannel(msg.n), controlFrame(FRAME_ACK, { s: msg.s, n: this.nodeId })).catch(() => {
      this.stats.commandErrors++;
    });
  }

  private ackFrame(frame: Buffer): void {
    const { s, n } = controlValue<{ s: number; n: string }>(frame);
    this.acks.ack(s, n);
  }

  /** Registers this node with its routes, loads the replica from a snapshot, then applies what was
   *  announced meanwhile (announcements and changes are atomic, so replaying them converges). Returns
   *  how many wills a previous life of this node id left (fresh start only). */
  private async sync(fresh: boolean): Promise<number> {
    const cmd = this.cmd!;
    this.buffered = [];
    try {
      // Subscribed before the snapshot: every change is in the snapshot, or arrives after it, or both.
      await this.sub!.subscribe(this.keys.routeChannel, this.keys.nodeChannel(this.nodeId));
      const routes = [...this.ownRoutes];
      const reset: RouteMessage = { t: 'reset', n: this.nodeId, s: 0, routes: routes.map(parseRouteMember) };
      const wills = await this.membership.register(cmd, routes, JSON.stringify(reset), fresh);
      const snapshot = await this.membership.snapshot(cmd);
      snapshot.delete(this.nodeId);
      const parsed = new Map<string, Array<[string, string]>>();
      for (const [node, members] of snapshot) parsed.set(node, members.map(parseRouteMember));
      this.replica.replaceAll(parsed);
      this.live = new Set(parsed.keys());
      return wills;
    } finally {
      const buffered = this.buffered;
      this.buffered = null;
      for (const msg of buffered) this.applyRouteMessage(msg);
    }
  }

  private resync(): void {
    if (this.syncing) {
      this.resyncWanted = true;
      return;
    }
    this.resyncWanted = false;
    this.syncing = this.sync(false)
      .then(
        () => this.log.info({ nodeId: this.nodeId, nodes: this.live.size, routes: this.ownRoutes.size }, 'redis router: registered again'),
        (err: unknown) => {
          this.stats.commandErrors++;
          // The next heartbeat (or reconnection) tries again.
          this.resyncWanted = true;
          this.log.warn({ nodeId: this.nodeId, err: String(err) }, 'redis router: registering again failed');
        },
      )
      .finally(() => {
        this.syncing = null;
        if (this.resyncWanted && this.state === 'running' && this.stats.connected) this.resync();
      });
  }

  private connectionChanged(): void {
    const connected = this.cmd?.status === 'ready' && this.sub?.status === 'ready';
    if (this.state !== 'running' || connected === this.stats.connected) return;
    this.stats.connected = connected;
    if (connected) {
      this.stats.reconnects++;
      this.log.info({ nodeId: this.nodeId }, 'redis router: connection restored');
      this.resync();
    } else {
      this.log.warn({ nodeId: this.nodeId }, 'redis router: connection lost; publishes to other nodes fail until it is back');
    }
    this.emit('status', this.status);
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.state !== 'running' || !this.stats.connected) return;
    if (this.resyncWanted && !this.syncing) return this.resync();
    this.ticking = true;
    try {
      const cmd = this.cmd!;
      const issuedAt = this.epoch;
      const { present, members } = await this.membership.beat(cmd);
      if (this.state !== 'running') return;
      if (!present && !this.syncing) {
        this.log.warn({ nodeId: this.nodeId }, 'redis router: this node was declared dead; registering again');
        this.resync();
      }
      const dead: string[] = [];
      const live = new Set<string>();
      for (const [node, alive] of members) {
        if (node === this.nodeId) continue;
        if (alive) live.add(node);
        else dead.push(node);
      }
      // Heard from since the beat was asked for: newer than what the beat saw.
      const recent = (node: string) => (this.heardAt.get(node) ?? -1) > issuedAt;
      for (const node of this.live) if (!live.has(node) && recent(node)) live.add(node);
      this.live = live;
      for (const node of [...this.replica.nodes()]) if (!members.has(node) && !recent(node)) this.replica.dropNode(node);
      this.acks.retain(live);
      for (const node of dead) {
        // nodeDown fires when the announcement comes back (applyRouteMessage), so this node's replica has
        // dropped the routes by then.
        const down: RouteMessage = { t: 'down', n: node, s: 0, by: this.nodeId };
        if (await this.membership.reap(cmd, node, JSON.stringify(down)))
          this.log.warn({ nodeId: this.nodeId, dead: node }, 'redis router: node died; its routes are removed');
      }
    } catch (err) {
      this.stats.commandErrors++;
      void err;
    } finally {
      this.ticking = false;
    }
  }

  private failPending(err: Error): void {
    const ops = this.pendingOpWaiters;
    const out = this.outboxWaiters;
    this.pendingOps = [];
    this.pendingOpWaiters = [];
    this.outbox = new Map();
    this.outboxWaiters = [];
    settle(ops, err);
    settle(out, err);
  }

  /** A throwing handler must not break the router's bookkeeping (or escape into ioredis' emitter). */
  private callHandler(name: string, call: (handlers: NodeHandlers) => void): void {
    if (!this.handlers) return;
    try {
      call(this.handlers);
    } catch (err) {
      this.log.error({ nodeId: this.nodeId, handler: name, err: String(err) }, 'redis router: node handler threw');
    }
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

function settle(waiters: Waiter[], err?: unknown): void {
  for (const w of waiters) {
    if (err === undefined) w.resolve();
    else w.reject(err);
  }
}
