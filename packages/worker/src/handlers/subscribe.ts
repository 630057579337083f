import type mqtt from 'mqtt-packet';
import { isValidTopicFilter, parseSharedFilter, type Message, type QoS } from '@starling/router';
import type { Connection } from '../connection.ts';
import { sendToSession } from '../delivery.ts';
import type { Subscription } from '../session.ts';
import { hookDecision, maySubscribe } from '../auth-client.ts';
import { subscribeLimitCode } from '../limits.ts';

interface Granted {
  sub: Subscription;
  /** Whether retained messages go out now (Retain Handling, MQTT 5.0 §3.8.3.1). */
  sendRetained: boolean;
}

export function handleSubscribe(conn: Connection, packet: mqtt.ISubscribePacket): void {
  const ctx = conn.ctx;
  const session = conn.session!;
  const v5 = conn.version === 5;
  const subId = packet.properties?.subscriptionIdentifier as number | undefined;
  // [MQTT-3.8.2-?] Subscription Identifier 0 is a protocol error.
  if (subId === 0) return conn.close('protocol_error');
  if (!packet.subscriptions || packet.subscriptions.length === 0) return conn.close('protocol_error'); // [MQTT-3.8.3-2]

  const codes: number[] = [];
  const granted: Granted[] = [];
  const waits: Array<Promise<void>> = [];
  for (const req of packet.subscriptions) {
    const requested = req.qos as QoS;
    const shared = parseSharedFilter(req.topic);
    if (shared === 'invalid' || (!shared && !isValidTopicFilter(req.topic))) {
      codes.push(v5 ? 0x8f : 0x80); // Topic Filter invalid
      continue;
    }
    // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
    if (shared && req.nl) return conn.close('protocol_error');
    const limited = subscribeLimitCode(conn, session, req.topic, shared ? shared.filter : req.topic);
    if (limited !== null) {
      codes.push(limited);
      continue;
    }
    if (!maySubscribe(conn, shared ? shared.filter : req.topic)) {
      codes.push(v5 ? 0x87 : 0x80); // refused; the other filters are still granted
      continue;
    }
    const qos = Math.min(requested, ctx.config.mqtt.maximumQoS) as QoS;
    const options = {
      qos,
      noLocal: v5 && req.nl === true,
      retainAsPublished: v5 && req.rap === true,
      retainHandling: (v5 ? (req.rh ?? 0) : 0) as 0 | 1 | 2,
      ...(subId !== undefined ? { subscriptionId: subId } : {}),
    };
    const existing = session.subscriptions.get(req.topic);
    if (existing) {
      // [MQTT-3.8.4-3] a repeated filter replaces the subscription's options.
      existing.options = options;
      granted.push({ sub: existing, sendRetained: !shared && options.retainHandling === 0 });
    } else {
      const sub: Subscription = shared
        ? { session, fullFilter: req.topic, filter: shared.filter, group: shared.group, options }
        : { session, fullFilter: req.topic, filter: req.topic, group: '', options };
      if (hookDecision(conn, 'subscribe', sub.filter) === true) sub.hookAllowed = true;
      const p = ctx.subscribe(sub);
      if (p) waits.push(p);
      // Retained messages are not sent to shared subscriptions (MQTT 5.0 §4.8.2).
      granted.push({ sub, sendRetained: !shared && options.retainHandling !== 2 });
    }
    codes.push(qos);
  }

  // A persistent session's subscriptions are kept in the router as they change, not only when the
  // connection ends: if this worker crashes, the hub re-homes the session from that copy.
  if (granted.length > 0 && session.expiryInterval > 0) ctx.hub.tell({ op: 'save-session', session: session.toStored() });

  const finish = () => {
    if (conn.state !== 'connected') return;
    conn.send(v5 ? { cmd: 'suback', messageId: packet.messageId, granted: codes, reasonCode: 0 } as mqtt.ISubackPacket : { cmd: 'suback', messageId: packet.messageId, granted: codes });
    if (ctx.config.mqtt.retainAvailable) for (const g of granted) if (g.sendRetained) void sendRetained(conn, g.sub);
  };
  // SUBACK only once every peer routes matching publishes here.
  if (waits.length === 0) finish();
  else void Promise.all(waits).then(finish);
}

async function sendRetained(conn: Connection, sub: Subscription): Promise<void> {
  let messages: Message[];
  try {
    messages = await conn.ctx.hub.request<Message[]>({ op: 'retained-get', filter: sub.filter });
  } catch (err) {
    conn.log.warn({ err: (err as Error).message }, 'retained lookup failed');
    return;
  }
  const now = Date.now();
  for (const m of messages) {
    if (conn.state !== 'connected') return;
    if (m.expiresAt !== undefined && m.expiresAt <= now) continue;
    if (sub.session.readAcl !== null && sub.hookAllowed !== true && !sub.session.readAcl.canRead(m.topic)) continue;
    const qos = Math.min(m.qos, sub.options.qos) as QoS;
    const ids = sub.options.subscriptionId !== undefined ? [sub.options.subscriptionId] : null;
    // [MQTT-3.3.1-8] sent because of a new subscription: RETAIN 1.
    sendToSession(conn.ctx, sub.session, m, qos, true, ids, now);
  }
}
