// A session's life across connections: created or resumed on CONNECT, kept offline or dropped when the
// connection ends, handed over to a new connection (takeover), expired.
import type { Message, StoredSession } from '@starling/router';
import { reasonInfo, type DisconnectReason } from '@starling/core/disconnect-reasons.ts';
import type { DetachResult } from '@starling/core/thread-messages.ts';
import type { Connection, ConnState } from './connection.ts';
import type { WorkerContext } from './context.ts';
import { drainQueue } from './delivery.ts';
import { encodePublish } from './encode.ts';
import { Session, type Subscription } from './session.ts';
import { parseSharedFilter } from '@starling/router';

const NEVER = 0xffffffff;

/** Settles the session and will of a connection that ended. */
export function endSession(conn: Connection, wasState: ConnState, reason: DisconnectReason): void {
  const ctx = conn.ctx;
  const session = conn.session;
  if (wasState === 'awaiting-connect' || !conn.clientId) return;
  const clientId = conn.clientId;
  const detached = reason === 'session_taken_over';

  if (session && session.conn === conn) {
    session.conn = null;
    const expiry = conn.expiryOnDisconnect ?? session.expiryInterval;
    session.expiryInterval = expiry;
    if (detached) {
      // The hub moves the session to the new connection (detach); nothing to release here.
    } else if (expiry > 0) {
      session.expiresAt = expiry === NEVER ? Number.POSITIVE_INFINITY : Date.now() + expiry * 1000;
      ctx.hub.tell({ op: 'save-session', session: session.toStored() });
      ctx.hub.tell({ op: 'release', clientId, connId: conn.id, offline: true });
    } else {
      ctx.dropSession(session);
      ctx.hub.tell({ op: 'release', clientId, connId: conn.id, offline: false });
    }
  } else if (!detached) {
    // Ended while the claim was in flight: give the ownership back.
    ctx.hub.tell({ op: 'release', clientId, connId: conn.id, offline: false });
  }

  if (!conn.will) return;
  if (reasonInfo(reason).publishesWill && wasState === 'connected') {
    // [MQTT-3.1.3-9] the will waits min(Will Delay Interval, Session Expiry Interval).
    const expiry = session?.expiryInterval ?? 0;
    const delay = Math.min(conn.willDelaySeconds, expiry);
    ctx.hub.tell({ op: 'will-publish', clientId, connId: conn.id, delayMs: delay * 1000 });
  } else {
    // [MQTT-3.1.2-10] a DISCONNECT with 0x00 deletes the will.
    ctx.hub.tell({ op: 'will-clear', clientId, connId: conn.id });
  }
}

/** Rebuilds a session from its stored form (another worker, node, or the router's snapshot). */
export function restoreSession(ctx: WorkerContext, stored: StoredSession, queue: Message[]): { session: Session; routes: Array<Promise<void>> } {
  const session = new Session(stored.clientId, stored.protocolVersion, stored.expiryInterval);
  const routes: Array<Promise<void>> = [];
  for (const [fullFilter, options] of Object.entries(stored.subscriptions)) {
    const shared = parseSharedFilter(fullFilter);
    const sub: Subscription =
      shared && shared !== 'invalid'
        ? { session, fullFilter, filter: shared.filter, group: shared.group, options }
        : { session, fullFilter, filter: fullFilter, group: '', options };
    const p = ctx.subscribe(sub);
    if (p) routes.push(p);
  }
  for (const f of stored.inflight) {
    const qos = f.message.qos === 2 ? 2 : 1;
    session.inflight.set(f.packetId, { message: f.message, qos, state: f.state, retain: false, subscriptionIds: null });
  }
  for (const id of stored.inboundQos2) session.inboundQos2.add(id);
  for (const m of queue) session.queue.push({ message: m, qos: m.qos === 2 ? 2 : 1, retain: false, subscriptionIds: null });
  return { session, routes };
}

/** Gives up a session to another connection (hub command). Closes its connection if still open. */
export function detachSession(ctx: WorkerContext, clientId: string, keepSession: boolean, collect = false): DetachResult {
  const session = ctx.sessions.get(clientId);
  if (!session) return { session: null, queue: [] };
  if (session.conn) {
    ctx.metrics.takeovers.inc();
    // [MQTT-3.1.4-3] the existing connection gets DISCONNECT 0x8E and is closed.
    session.conn.close('session_taken_over');
  }
  const stored = keepSession ? session.toStored() : null;
  const queue = keepSession ? queuedMessages(session) : [];
  if (collect && keepSession) {
    // Claimed on another node: stay subscribed until that node has the subscriptions in place, so
    // nothing published meanwhile is lost; what arrives from now on is the tail (releaseCollected).
    const previous = ctx.collecting.get(clientId);
    if (previous) ctx.dropSession(previous);
    ctx.sessions.delete(clientId);
    session.queue.length = 0;
    session.held = null;
    ctx.collecting.set(clientId, session);
    ctx.log.debug({ clientId, queued: queue.length, inflight: session.inflight.size }, 'session moving to another node: collecting');
    return { session: stored, queue };
  }
  ctx.dropSession(session);
  return { session: stored, queue };
}

/** Queued messages travel at the QoS they were granted (restoreSession reads message.qos) [MQTT-3.8.4-6],
 *  held ones after the rest. */
function queuedMessages(session: Session): Message[] {
  const all = session.held ? [...session.queue, ...session.held] : session.queue;
  return all.map((q) => (q.qos === q.message.qos ? q.message : { ...q.message, qos: q.qos }));
}

/** Ends a collecting session (detachSession with collect): returns what it queued since. */
export function releaseCollected(ctx: WorkerContext, clientId: string): DetachResult {
  const session = ctx.collecting.get(clientId);
  if (!session) return { session: null, queue: [] };
  ctx.collecting.delete(clientId);
  const queue = queuedMessages(session);
  ctx.log.debug({ clientId, collected: queue.length }, 'session moved: stopped collecting');
  ctx.dropSession(session);
  return { session: null, queue };
}

/** Same message, whichever way it came: publisher, receive time (high resolution) and topic. */
function identity(m: Message): string {
  return `${m.origin}\u0000${m.receivedAt}\u0000${m.topic}`;
}

/**
 * Ends the hold of a session moved from another node: what that node collected meanwhile goes first (it
 * was published before what reached the session here directly), without what reached both.
 */
export function mergeHandover(ctx: WorkerContext, clientId: string, collected: Message[]): boolean {
  const session = ctx.sessions.get(clientId);
  if (!session?.held) return false;
  const held = session.held;
  session.held = null;
  const direct = new Set(held.map((q) => identity(q.message)));
  let duplicates = 0;
  for (const m of collected) {
    if (direct.has(identity(m))) {
      duplicates++;
      continue;
    }
    session.queue.push({ message: m, qos: m.qos === 2 ? 2 : 1, retain: false, subscriptionIds: null });
  }
  for (const q of held) session.queue.push(q);
  ctx.log.debug({ clientId, collected: collected.length, duplicates, held: held.length }, 'session moved: merged what the previous node collected');
  drainQueue(ctx, session);
  return true;
}

/** On resume: unacknowledged messages again with DUP [MQTT-4.4.0-1], PUBRELs again, then the queue. */
export function resendInflight(ctx: WorkerContext, session: Session): void {
  const conn = session.conn!;
  const now = Date.now();
  // The new connection's Receive Maximum may be smaller than what is in flight: resend only what fits,
  // the rest keep their ids and go out as acks make room (drainQueue) [MQTT-3.3.4-7]. PUBRELs always go:
  // their messages count against the window either way, and completing them frees it.
  let room = conn.outboundWindow;
  for (const f of session.inflight.values()) if (f.state === 'pubrel') room--;
  for (const [packetId, f] of session.inflight) {
    if (f.state === 'pubrel') {
      conn.send({ cmd: 'pubrel', messageId: packetId });
      continue;
    }
    if (room <= 0) {
      f.unsent = true;
      session.hasUnsent = true;
      continue;
    }
    room--;
    conn.write(encodePublish(f.message, { version: conn.version, qos: f.qos, retain: f.retain, dup: true, packetId, subscriptionIds: f.subscriptionIds, now }));
    ctx.metrics.stats.sent[f.qos]++;
  }
  drainQueue(ctx, session);
}

/** Drops offline sessions whose Session Expiry Interval passed. Called by the worker's sweep. */
export function expireSessions(ctx: WorkerContext, now: number): void {
  for (const session of ctx.sessions.values()) {
    if (session.conn || session.expiresAt === 0 || session.expiresAt > now) continue;
    ctx.log.debug({ clientId: session.clientId }, 'session expired');
    ctx.dropSession(session);
    ctx.hub.tell({ op: 'delete-session', clientId: session.clientId });
  }
}
