// Pre-generated MQTT packets. mqtt-packet encodes each packet kind once; the hot paths then only
// copy bytes and patch the 2-byte packet id (and the timestamp for latency runs) in place.

import mqttPacket from 'mqtt-packet';
import type { ProtocolVersion, Qos } from '../types.ts';

export function connectPacket(clientId: string, protocol: ProtocolVersion, keepalive: number): Buffer {
  return mqttPacket.generate(
    {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: protocol,
      clientId,
      clean: true,
      keepalive,
    },
    { protocolVersion: protocol },
  );
}

export function subscribePacket(filter: string, qos: Qos, protocol: ProtocolVersion, messageId = 1): Buffer {
  return mqttPacket.generate(
    { cmd: 'subscribe', messageId, subscriptions: [{ topic: filter, qos }] },
    { protocolVersion: protocol },
  );
}

export function disconnectPacket(): Buffer {
  // 0xE0 0x00 is valid for both 3.1.1 and 5.0 (reason code 0 and no properties may be omitted).
  return Buffer.from([0xe0, 0x00]);
}

export const PINGREQ_PACKET = Buffer.from([0xc0, 0x00]);

/** Bytes reserved at the start of a latency payload for the send timestamp (float64 ns). */
export const STAMP_BYTES = 8;

export interface PublishTemplate {
  packet: Buffer;
  /** Offset of the packet id (QoS>0 only), -1 for QoS 0. */
  idOffset: number;
  /** Offset of the first payload byte. */
  payloadOffset: number;
}

export function publishTemplate(topic: string, size: number, qos: Qos, protocol: ProtocolVersion): PublishTemplate {
  // Payload is a recognisable pattern rather than zeros so compression-happy paths get no edge.
  const payload = Buffer.alloc(size);
  for (let i = 0; i < size; i++) payload[i] = 0x61 + (i % 26);
  const packet = mqttPacket.generate(
    { cmd: 'publish', topic, payload, qos, messageId: qos > 0 ? 1 : undefined, retain: false, dup: false },
    { protocolVersion: protocol },
  );
  const remLen = packet.length - 1 - varintSize(packet, 1);
  const headerLen = packet.length - remLen;
  const topicLen = Buffer.byteLength(topic);
  const idOffset = qos > 0 ? headerLen + 2 + topicLen : -1;
  // MQTT 5 puts a properties block (here empty: one 0x00 byte) after the packet id.
  const payloadOffset = headerLen + 2 + topicLen + (qos > 0 ? 2 : 0) + (protocol === 5 ? 1 : 0);
  if (packet.length - payloadOffset !== size) throw new Error('unexpected PUBLISH layout');
  return { packet, idOffset, payloadOffset };
}

function varintSize(buf: Buffer, pos: number): number {
  let n = 1;
  while (buf[pos + n - 1]! & 0x80) n++;
  return n;
}

/** `count` copies of the same QoS 0 PUBLISH back to back: one write sends them all. */
export function repeatPacket(packet: Buffer, count: number): Buffer {
  const out = Buffer.allocUnsafe(packet.length * count);
  for (let i = 0; i < count; i++) packet.copy(out, i * packet.length);
  return out;
}

/**
 * A ring of `count` QoS>0 PUBLISHes whose packet ids are 1..count. Publishers send contiguous
 * slices of it, so the steady state copies nothing: slot i always carries id i+1.
 */
export function publishRing(t: PublishTemplate, count: number): Buffer {
  const ring = repeatPacket(t.packet, count);
  for (let i = 0; i < count; i++) ring.writeUInt16BE(i + 1, i * t.packet.length + t.idOffset);
  return ring;
}

/** PUBACK/PUBREC/PUBREL/PUBCOMP are all 4 bytes in 3.1.1 and (reason code omitted) in 5.0. */
export function ackHeader(type: 4 | 5 | 6 | 7): number {
  // PUBREL has the reserved flags 0b0010 [MQTT-3.6.1-1].
  return (type << 4) | (type === 6 ? 0x02 : 0x00);
}
