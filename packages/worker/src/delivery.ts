// The publish path: from one received message to every matching subscriber, local and on peers.
// Hot path: no per-subscriber serialization where bytes can be shared, no closures per message.
import type { Message, QoS } from '@starling/router';
import { HUB, type Envelope } from '@starling/core/thread-messages.ts';
import type { WorkerContext } from './context.ts';
import { encodePublish, packetIdOffset, withPacketId, type ProtocolVersion } from './encode.ts';
import type { PeerRoute } from '@starling/core/mesh.ts';
import type { Session, Subscription } from './session.ts';

let deliverEpoch = 0;
const touched: Session[] = [];
let currentMessage: Message | null = null;
let currentNormal = true;

/** One encoding per (version, qos, retain) within one fan-out; QoS > 0 copies patch only the packet id. */
const cache = new Map<number, { buf: Buffer; idOffset: number }>();
/** The message the cache holds encodings of. drainQueue and retained sends encode outside a fan-out,
 *  where the cache was not cleared: keying on the message keeps them from sending a stale payload. */
let cacheFor: Message | null = null;
let cacheNow = 0;

function collect(sub: Subscription): void {
  const m = currentMessage!;
  if (!currentNormal || sub.group !== '') return;
  // [MQTT-3.8.3-3] No Local: not back to the publishing client.
  if (sub.options.noLocal && sub.session.clientId === m.origin) return;
  accumulate(sub);
}

function accumulate(sub: Subscription): void {
  const s = sub.session;
  // A wildcard must not carry a topic the subscriber may not read (ACL deny rules, aclDefault deny).
  if (s.readAcl !== null && sub.hookAllowed !== true && !s.readAcl.canRead(currentMessage!.topic)) return;
  if (s.deliverMark !== deliverEpoch) {
    s.deliverMark = deliverEpoch;
    s.deliverQos = 0;
    s.deliverRetainAsPublished = false;
    s.deliverSubIds = null;
    touched.push(s);
  }
  // Overlapping subscriptions: one copy at the highest QoS, carrying every subscription id [MQTT-3.3.4-2], [MQTT-3.3.4-3].
  if (sub.options.qos > s.deliverQos) s.deliverQos = sub.options.qos;
  if (sub.options.retainAsPublished) s.deliverRetainAsPublished = true;
  if (sub.options.subscriptionId !== undefined) (s.deliverSubIds ??= []).push(sub.options.subscriptionId);
}

/** Delivers to this worker's subscribers: plain ones when `normal`, and one member per listed group. */
export function deliverLocal(ctx: WorkerContext, m: Message, normal: boolean, groups: readonly string[] | null): number {
  deliverEpoch++;
  currentMessage = m;
  currentNormal = normal;
  if (normal) ctx.subs.trie.match(m.topic, collect);
  if (groups) {
    for (const key of groups) {
      const sub = ctx.subs.pickMember(key);
      if (sub) accumulate(sub);
    }
  }
  const now = Date.now();
  if (m.expiresAt !== undefined && m.expiresAt <= now) {
    ctx.metrics.stats.dropped.expired += touched.length;
    touched.length = 0;
    return 0;
  }
  const count = touched.length;
  for (let i = 0; i < touched.length; i++) {
    const s = touched[i]!;
    const qos = (m.qos < s.deliverQos ? m.qos : s.deliverQos) as QoS;
    // [MQTT-3.3.1-9] an established subscription gets RETAIN 0 unless Retain As Published [MQTT-3.3.1-13].
    sendToSession(ctx, s, m, qos, s.deliverRetainAsPublished && m.retain, s.deliverSubIds, now);
  }
  touched.length = 0;
  cache.clear();
  currentMessage = null;
  if (count > 0) ctx.metrics.latency.observeSince(m.receivedAt);
  return count;
}

/** Sends or queues one message to a session, honouring its in-flight window and packet size limit. */
export function sendToSession(
  ctx: WorkerContext,
  s: Session,
  m: Message,
  qos: QoS,
  retain: boolean,
  subIds: number[] | null,
  now: number,
): void {
  const conn = s.conn;
  const stats = ctx.metrics.stats;
  if (qos === 0) {
    if (!conn || !conn.ready) {
      stats.dropped.offline_qos0++;
      return;
    }
    // A slow subscriber loses QoS 0 messages rather than holding publishers; nobody grows memory unbounded.
    if (conn.socketBacklog() > (conn.slow ? 65536 : ctx.config.limits.maxSocketBuffer)) {
      stats.dropped.slow_consumer++;
      return;
    }
    const buf = conn.topicAliasMaximum > 0 || subIds ? conn.encodeForClient(m, 0, retain, false, 0, subIds, now) : cached(conn.version, m, 0, retain, now).buf;
    if (buf.length > conn.clientMaxPacketSize) {
      // [MQTT-3.1.2-25] never send a packet larger than the client's Maximum Packet Size.
      stats.dropped.too_large++;
      return;
    }
    conn.write(buf);
    stats.sent[0]++;
    ctx.flow.afterWrite(conn);
    return;
  }
  if (s.held) {
    // Moving from another node: behind what that node collected for the session meanwhile.
    if (s.queue.length + s.held.length >= ctx.config.limits.maxQueued) stats.dropped.queue_full++;
    else s.held.push({ message: m, qos, retain, subscriptionIds: subIds });
    return;
  }
  if (!conn || !conn.ready || s.inflight.size >= conn.outboundWindow) {
    if (s.queue.length >= ctx.config.limits.maxQueued) {
      stats.dropped.queue_full++;
      return;
    }
    s.queue.push({ message: m, qos, retain, subscriptionIds: subIds });
    return;
  }
  transmit(ctx, s, m, qos, retain, subIds, now);
}

/** Assigns a packet id and writes a QoS 1/2 PUBLISH (the window has room). */
function transmit(ctx: WorkerContext, s: Session, m: Message, qos: 1 | 2, retain: boolean, subIds: number[] | null, now: number): void {
  const conn = s.conn!;
  const id = s.allocatePacketId();
  if (id === null) {
    s.queue.push({ message: m, qos, retain, subscriptionIds: subIds });
    return;
  }
  let buf: Buffer;
  if (conn.topicAliasMaximum > 0 || subIds) buf = conn.encodeForClient(m, qos, retain, false, id, subIds, now);
  else {
    const c = cached(conn.version, m, qos, retain, now);
    buf = withPacketId(c.buf, c.idOffset, id, false);
  }
  if (buf.length > conn.clientMaxPacketSize) {
    ctx.metrics.stats.dropped.too_large++;
    return;
  }
  s.inflight.set(id, { message: m, qos, state: 'publish', retain, subscriptionIds: subIds });
  conn.write(buf);
  ctx.metrics.stats.sent[qos]++;
  ctx.flow.afterWrite(conn);
}

function cached(version: ProtocolVersion, m: Message, qos: QoS, retain: boolean, now: number): { buf: Buffer; idOffset: number } {
  if (cacheFor !== m || cacheNow !== now) {
    cache.clear();
    cacheFor = m;
    cacheNow = now;
  }
  const key = version * 8 + qos * 2 + (retain ? 1 : 0);
  let c = cache.get(key);
  if (!c) {
    const buf = encodePublish(m, { version, qos, retain, dup: false, packetId: 1, subscriptionIds: null, now });
    c = { buf, idOffset: qos > 0 ? packetIdOffset(buf) : 0 };
    cache.set(key, c);
  }
  return c;
}

/** Moves queued messages into the window as it frees up (after an ack, or on resume). */
export function drainQueue(ctx: WorkerContext, s: Session): void {
  const conn = s.conn;
  if (!conn || !conn.ready) return;
  const now = Date.now();
  // In-flight messages still to be resent after a resume come first, in their order [MQTT-4.6.0-1];
  // while any wait, the window counts as full, so the queue below stays put.
  if (s.hasUnsent && !resendUnsent(s, conn, now)) return;
  while (s.queue.length > 0 && s.inflight.size < conn.outboundWindow) {
    const q = s.queue.shift()!;
    if (q.message.expiresAt !== undefined && q.message.expiresAt <= now) {
      ctx.metrics.stats.dropped.expired++;
      continue;
    }
    transmit(ctx, s, q.message, q.qos, q.retain, q.subscriptionIds, now);
  }
}

/** Resends in-flight messages held back on resume as the window allows; true once none wait. */
function resendUnsent(s: Session, conn: NonNullable<Session['conn']>, now: number): boolean {
  let waiting = 0;
  for (const f of s.inflight.values()) if (f.unsent) waiting++;
  let room = conn.outboundWindow - (s.inflight.size - waiting);
  for (const [packetId, f] of s.inflight) {
    if (!f.unsent) continue;
    if (f.state === 'pubrel') {
      f.unsent = false; // the client acknowledged it (PUBREC) meanwhile: no PUBLISH again
      continue;
    }
    if (room <= 0) return false;
    room--;
    f.unsent = false;
    conn.write(encodePublish(f.message, { version: conn.version, qos: f.qos, retain: f.retain, dup: true, packetId, subscriptionIds: f.subscriptionIds, now }));
    conn.ctx.metrics.stats.sent[f.qos]++;
  }
  s.hasUnsent = false;
  return true;
}

// --- Routing a message published on this worker ---------------------------------------------------

const peerMark: number[] = [];
let peerEpoch = 0;
const normalPeers: number[] = [];
let sharedCandidates: Map<string, number[]> | null = null;

function collectPeer(route: PeerRoute): void {
  if (route.group === '') {
    if (peerMark[route.peer] !== peerEpoch) {
      peerMark[route.peer] = peerEpoch;
      normalPeers.push(route.peer);
    }
  } else if (sharedCandidates) {
    const key = `${route.group}/${route.filter}`;
    const list = sharedCandidates.get(key);
    if (list) list.push(route.peer);
    else sharedCandidates.set(key, [route.peer]);
  }
}

let selfId = 0;
function collectLocalShared(sub: Subscription): void {
  if (sub.group === '' || !sharedCandidates) return;
  const key = `${sub.group}/${sub.filter}`;
  const list = sharedCandidates.get(key);
  if (!list) sharedCandidates.set(key, [selfId]);
  else if (!list.includes(selfId)) list.push(selfId);
}

const NO_CHOICE: Map<number, string[]> = new Map();

export interface RouteOutcome {
  /** Subscribers reached on this worker plus peers the message was forwarded to. */
  matched: number;
  /** Settles when the hub confirmed routing to other nodes (only when it had to be asked). */
  remote: Promise<void> | null;
}

/**
 * Routes a message from a client (or the hub) of this worker: local subscribers, peers with a matching
 * route, and one member of each matching shared group across all peers [MQTT-4.8.2-?].
 */
export function routeMessage(ctx: WorkerContext, m: Message): RouteOutcome {
  selfId = ctx.workerId;
  peerEpoch++;
  normalPeers.length = 0;
  const shared = ctx.mesh.sharedRoutes > 0 || ctx.subs.groups.size > 0;
  sharedCandidates = shared ? new Map() : null;
  ctx.mesh.routes.match(m.topic, collectPeer);
  let localGroups: string[] | null = null;
  const chosen = sharedCandidates ? new Map<number, string[]>() : NO_CHOICE;
  if (sharedCandidates) {
    ctx.subs.trie.match(m.topic, collectLocalShared);
    for (const [key, candidates] of sharedCandidates) {
      const cursor = ctx.groupCursor.get(key) ?? 0;
      ctx.groupCursor.set(key, cursor + 1);
      const peer = candidates[cursor % candidates.length]!;
      if (peer === selfId) (localGroups ??= []).push(key);
      else {
        const list = chosen.get(peer);
        if (list) list.push(key);
        else chosen.set(peer, [key]);
      }
    }
    sharedCandidates = null;
  }
  let matched = deliverLocal(ctx, m, true, localGroups);
  let remote: Promise<void> | null = null;
  for (let i = 0; i < normalPeers.length; i++) {
    const peer = normalPeers[i]!;
    const groups = chosen.get(peer) ?? null;
    chosen.delete(peer);
    if (peer === HUB && m.qos > 0) remote = forwardToHub(ctx, m, true, groups);
    else {
      ctx.mesh.send(peer, { m, normal: true, groups } satisfies Envelope);
      if (ctx.mesh.isBehind(peer)) ctx.flow.peerBehind(peer);
    }
    matched++;
  }
  for (const [peer, groups] of chosen) {
    if (peer === HUB && m.qos > 0) remote = forwardToHub(ctx, m, false, groups);
    else {
      ctx.mesh.send(peer, { m, normal: false, groups });
      if (ctx.mesh.isBehind(peer)) ctx.flow.peerBehind(peer);
    }
    matched++;
  }
  return { matched, remote };
}

/** QoS 1/2 to other nodes: wait for the hub to confirm, so the PUBACK never claims a route that failed. */
function forwardToHub(ctx: WorkerContext, m: Message, normal: boolean, groups: string[] | null): Promise<void> {
  // QoS 0 messages batched for the hub go first: one publisher's messages leave the node in order.
  ctx.mesh.flushNow(HUB);
  return ctx.hub.request<void>({ op: 'forward', envelope: { m, normal, groups } });
}
