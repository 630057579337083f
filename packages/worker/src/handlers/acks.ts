// PUBACK, PUBREC, PUBREL, PUBCOMP: the QoS 1 and QoS 2 state machines (MQTT 5.0 §4.3).
import type mqtt from 'mqtt-packet';
import type { Connection } from '../connection.ts';
import { drainQueue } from '../delivery.ts';

/** PUBACK from the client completes an outbound QoS 1 message [MQTT-4.3.2-?]. */
export function handlePuback(conn: Connection, packet: mqtt.IPubackPacket): void {
  const session = conn.session!;
  const id = packet.messageId!;
  const f = session.inflight.get(id);
  if (f && f.qos === 1) {
    session.inflight.delete(id);
    drainQueue(conn.ctx, session);
  }
}

/** PUBREC: the client has the QoS 2 message; answer PUBREL [MQTT-4.3.3-?], or drop on an error code. */
export function handlePubrec(conn: Connection, packet: mqtt.IPubrecPacket): void {
  const session = conn.session!;
  const id = packet.messageId!;
  const f = session.inflight.get(id);
  if (f && (packet.reasonCode ?? 0) >= 0x80) {
    session.inflight.delete(id);
    drainQueue(conn.ctx, session);
    return;
  }
  if (f && f.qos === 2) f.state = 'pubrel';
  // [MQTT-3.6.4-?] v5: a PUBREC for an unknown id still gets PUBREL 0x92 Packet Identifier not found.
  if (conn.version === 5 && !f) conn.send({ cmd: 'pubrel', messageId: id, reasonCode: 0x92 });
  else conn.send({ cmd: 'pubrel', messageId: id });
}

/** PUBREL from the client releases an inbound QoS 2 id: PUBCOMP, and the id may be reused. */
export function handlePubrel(conn: Connection, packet: mqtt.IPubrelPacket): void {
  const session = conn.session!;
  const id = packet.messageId!;
  const known = session.inboundQos2.delete(id);
  if (known) conn.inboundPending = Math.max(0, conn.inboundPending - 1);
  if (conn.version === 5 && !known) conn.send({ cmd: 'pubcomp', messageId: id, reasonCode: 0x92 });
  else conn.send({ cmd: 'pubcomp', messageId: id });
}

/** PUBCOMP completes an outbound QoS 2 message. */
export function handlePubcomp(conn: Connection, packet: mqtt.IPubcompPacket): void {
  const session = conn.session!;
  const id = packet.messageId!;
  const f = session.inflight.get(id);
  if (f && f.qos === 2) {
    session.inflight.delete(id);
    drainQueue(conn.ctx, session);
  }
}
