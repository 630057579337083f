import type mqtt from 'mqtt-packet';
import { isValidTopicName, type ForwardedProperties, type Message } from '@starling/router';
import type { Connection } from '../connection.ts';
import { routeMessage } from '../delivery.ts';
import { mayPublish } from '../auth-client.ts';
import { admitPublish } from '../limits.ts';

/** A payload copy with its own small ArrayBuffer: the parser's slice may view a 64 KiB chunk, and a
 *  structured clone to another thread would copy all of it. */
export function copyBytes(src: Buffer): Buffer {
  const out = Buffer.allocUnsafeSlow(src.length);
  src.copy(out);
  return out;
}

type InProps = NonNullable<mqtt.IPublishPacket['properties']>;

export function forwardedProperties(p: InProps | undefined): ForwardedProperties | undefined {
  if (!p) return undefined;
  let out: ForwardedProperties | undefined;
  // [MQTT-3.3.2-4], [MQTT-3.3.2-15..20]: forwarded unaltered.
  if (p.payloadFormatIndicator !== undefined) (out ??= {}).payloadFormatIndicator = p.payloadFormatIndicator;
  if (p.contentType !== undefined) (out ??= {}).contentType = p.contentType;
  if (p.responseTopic !== undefined) (out ??= {}).responseTopic = p.responseTopic;
  if (p.correlationData !== undefined) (out ??= {}).correlationData = copyBytes(p.correlationData);
  if (p.userProperties !== undefined) (out ??= {}).userProperties = p.userProperties;
  return out;
}

/** Sends an ack after `wait` settles, keeping acks in arrival order [MQTT-4.6.0-2]. */
function ackInOrder(conn: Connection, wait: Promise<unknown> | null, send: (ok: boolean) => void): void {
  if (!wait && !conn.ackChain) {
    send(true);
    return;
  }
  const prev = conn.ackChain ?? Promise.resolve();
  const mine: Promise<void> = Promise.all([prev, wait]).then(
    () => send(true),
    () => send(false),
  );
  conn.ackChain = mine;
  void mine.finally(() => {
    if (conn.ackChain === mine) conn.ackChain = null;
  });
}

export function handlePublish(conn: Connection, packet: mqtt.IPublishPacket): void {
  const ctx = conn.ctx;
  const cfg = ctx.config;
  const qos = packet.qos;
  let topic = packet.topic;
  const props = packet.properties;

  if (conn.version === 5 && props?.topicAlias !== undefined) {
    const alias = props.topicAlias;
    // [MQTT-3.3.2-8], [MQTT-3.3.2-9]: 0 or above our Topic Alias Maximum closes with 0x94.
    if (alias === 0 || alias > cfg.limits.topicAliasMaximum) return conn.close('topic_alias_invalid');
    if (topic === '') {
      const known = conn.inboundAliases.get(alias);
      if (known === undefined) return conn.close('protocol_error');
      topic = known;
    } else conn.inboundAliases.set(alias, topic);
  }
  // [MQTT-3.3.2-2] no wildcards in a topic name; v5 0x90 Topic Name invalid.
  // [MQTT-3.3.2-?] v5: an empty Topic Name without a Topic Alias is a Protocol Error (0x82).
  if (topic === '') return conn.close('protocol_error');
  if (!isValidTopicName(topic)) return conn.close('protocol_error', conn.version === 5 ? 0x90 : undefined);
  if (props?.subscriptionIdentifier !== undefined) return conn.close('protocol_error'); // [MQTT-3.3.4-6]
  if (!admitPublish(conn, packet, topic)) return; // limits.ts: rates, topic length/levels
  // [MQTT-3.2.2-11] / [MQTT-3.2.2-14]: above Maximum QoS or retain when unavailable.
  if (qos > cfg.mqtt.maximumQoS) return conn.close('protocol_error', 0x9b);
  if (packet.retain && !cfg.mqtt.retainAvailable) return conn.close('protocol_error', 0x9a);
  if (cfg.debug.crashOnTopic !== undefined && topic === cfg.debug.crashOnTopic) {
    // Test-only fault injection: thrown on a later turn, outside dispatch's try/catch, so it is a real
    // uncaught exception that ends this worker thread (not one connection).
    setImmediate(() => {
      throw new Error(`debug.crashOnTopic: crashing worker ${ctx.workerId} on purpose`);
    });
    return;
  }

  const session = conn.session!;
  const id = packet.messageId ?? 0;
  if (qos > 0) {
    if (qos === 2 && session.inboundQos2.has(id)) {
      // A resend before PUBREL: acknowledge again, deliver nothing twice [MQTT-4.3.3-10]. Its PUBREC
      // queues behind acks still pending (e.g. a retained store) to keep arrival order [MQTT-4.6.0-3];
      // if the original failed meanwhile, the resend gets the same answer the original got.
      ackInOrder(conn, null, () => {
        if (session.inboundQos2.has(id)) conn.send({ cmd: 'pubrec', messageId: id });
        else if (conn.version === 5) conn.send({ cmd: 'pubrec', messageId: id, reasonCode: 0x80 });
      });
      return;
    }
    // [MQTT-3.3.4-9] more unacknowledged QoS>0 PUBLISHes than our Receive Maximum: 0x93.
    if (conn.inboundPending >= cfg.limits.receiveMaximum) return conn.close('receive_maximum_exceeded');
  }
  ctx.metrics.stats.received[qos]++;

  // $SYS/ is the broker's own (statistics, sys-topics.ts): clients read it, never write it.
  if (!mayPublish(conn, topic) || (topic.charCodeAt(0) === 0x24 && topic.startsWith('$SYS/'))) {
    ctx.metrics.stats.dropped.not_authorized++;
    if (conn.version === 5) {
      // Refused, connection kept: v5 PUBACK/PUBREC 0x87 Not authorized.
      if (qos === 1) conn.send({ cmd: 'puback', messageId: id, reasonCode: 0x87 });
      else if (qos === 2) conn.send({ cmd: 'pubrec', messageId: id, reasonCode: 0x87 });
      return;
    }
    if (cfg.mqtt.v3DeniedPublish === 'disconnect') return conn.close('not_authorized');
    // v3.1.1 has no negative ack: the message is dropped, the flow completes [MQTT-3.3.5-2].
    if (qos === 1) conn.send({ cmd: 'puback', messageId: id });
    else if (qos === 2) conn.send({ cmd: 'pubrec', messageId: id });
    return;
  }

  const now = Date.now();
  const message: Message = {
    topic,
    payload: copyBytes(packet.payload as Buffer),
    qos,
    retain: packet.retain,
    origin: session.clientId,
    receivedAt: conn.receivedAt,
  };
  const fwd = forwardedProperties(props);
  if (fwd) message.properties = fwd;
  if (props?.messageExpiryInterval !== undefined) message.expiresAt = now + props.messageExpiryInterval * 1000;

  let wait: Promise<unknown> | null = null;
  if (packet.retain) {
    // Stored before the ack, so a subscriber anywhere sees it once the publisher was acknowledged.
    const stored = ctx.hub.request<void>({ op: 'retained-set', message });
    if (qos > 0) wait = stored;
    else stored.catch((err: Error) => conn.log.warn({ err: err.message }, 'retained store failed'));
  }
  // Retained deletion (empty payload) is routed like any message [MQTT-3.3.1-10 note].
  ctx.flow.source = conn;
  const outcome = routeMessage(ctx, message);
  ctx.flow.source = null;
  if (outcome.matched === 0 && !packet.retain) ctx.metrics.stats.dropped.no_route++;
  if (outcome.remote) wait = wait ? Promise.all([wait, outcome.remote]) : outcome.remote;

  if (qos === 0) {
    wait?.catch(() => undefined);
    return;
  }
  conn.inboundPending++;
  if (qos === 2) session.inboundQos2.add(id);
  const v5 = conn.version === 5;
  ackInOrder(conn, wait, (ok) => {
    if (qos === 1) {
      conn.inboundPending--;
      // Not routed cluster-wide: 0x80 Unspecified error (v5); v3 gets no ack, so the client resends.
      if (ok) conn.send({ cmd: 'puback', messageId: id });
      else if (v5) conn.send({ cmd: 'puback', messageId: id, reasonCode: 0x80 });
    } else {
      if (ok) conn.send({ cmd: 'pubrec', messageId: id });
      else {
        session.inboundQos2.delete(id);
        conn.inboundPending--;
        if (v5) conn.send({ cmd: 'pubrec', messageId: id, reasonCode: 0x80 });
      }
    }
  });
}
