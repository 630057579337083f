import mqtt from 'mqtt-packet';
import type { Message, QoS } from '@starling/router';

export type ProtocolVersion = 3 | 4 | 5;

export interface PublishOptions {
  version: ProtocolVersion;
  qos: QoS;
  retain: boolean;
  dup: boolean;
  packetId?: number;
  subscriptionIds: number[] | null;
  topicAlias?: number;
  /** Send an empty topic name: the alias stands for it (MQTT 5.0 §3.3.2.3.4). */
  aliasOnly?: boolean;
  now: number;
}

export function asBuffer(bytes: Uint8Array): Buffer {
  // Messages that crossed a thread arrive as plain Uint8Arrays.
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodePublish(m: Message, o: PublishOptions): Buffer {
  const packet: mqtt.IPublishPacket = {
    cmd: 'publish',
    topic: o.aliasOnly ? '' : m.topic,
    payload: asBuffer(m.payload),
    qos: o.qos,
    retain: o.retain,
    dup: o.dup,
  };
  if (o.qos > 0) packet.messageId = o.packetId ?? 1;
  if (o.version === 5) {
    const props: NonNullable<mqtt.IPublishPacket['properties']> = {};
    const p = m.properties;
    if (p) {
      if (p.payloadFormatIndicator !== undefined) props.payloadFormatIndicator = p.payloadFormatIndicator;
      if (p.contentType !== undefined) props.contentType = p.contentType;
      if (p.responseTopic !== undefined) props.responseTopic = p.responseTopic;
      if (p.correlationData !== undefined) props.correlationData = asBuffer(p.correlationData);
      if (p.userProperties !== undefined) props.userProperties = p.userProperties;
    }
    // [MQTT-3.3.2-6] the expiry sent is the received value minus the time spent waiting in the server.
    if (m.expiresAt !== undefined) props.messageExpiryInterval = Math.max(1, Math.ceil((m.expiresAt - o.now) / 1000));
    if (o.subscriptionIds && o.subscriptionIds.length > 0)
      props.subscriptionIdentifier = o.subscriptionIds.length === 1 ? o.subscriptionIds[0]! : o.subscriptionIds;
    if (o.topicAlias !== undefined) props.topicAlias = o.topicAlias;
    packet.properties = props;
  }
  return mqtt.generate(packet, { protocolVersion: o.version });
}

/** Offset of the packet identifier in an encoded PUBLISH with QoS > 0 (after the topic name). */
export function packetIdOffset(buf: Buffer): number {
  let pos = 1;
  while (buf[pos]! & 0x80) pos++;
  pos++;
  const topicLength = buf.readUInt16BE(pos);
  return pos + 2 + topicLength;
}

/** A copy of an encoded QoS > 0 PUBLISH with another packet id: the fan-out serializes once. */
export function withPacketId(template: Buffer, offset: number, packetId: number, dup: boolean): Buffer {
  const out = Buffer.allocUnsafe(template.length);
  template.copy(out);
  out.writeUInt16BE(packetId, offset);
  if (dup) out[0] = out[0]! | 0x08;
  return out;
}

export function encode(packet: mqtt.Packet, version: ProtocolVersion): Buffer {
  return mqtt.generate(packet, { protocolVersion: version });
}
