// Wire and storage encodings for the Redis router. Messages use a length-prefixed binary layout: payloads
// are bytes and must survive byte-exact, and base64-in-JSON costs a third more bytes plus two passes
// (see bench/codec.ts). Rare, structured values (sessions, wills, control frames) use JSON in which byte
// arrays become {"$b": base64}.

import type { ForwardedProperties, Message, QoS, SessionOwner } from './types.ts';

const F_RETAIN = 1;
const F_EXPIRES = 2;
const F_PROPS = 4;

/** Encodes one message: the unit stored for retained messages and offline queues, and carried in frames. */
export function encodeMessage(m: Message): Buffer {
  const topicLen = Buffer.byteLength(m.topic);
  const originLen = Buffer.byteLength(m.origin);
  const props = m.properties ? Buffer.from(toJson(m.properties)) : null;
  const size = 1 + 1 + 2 + topicLen + 2 + originLen + 8 + (m.expiresAt !== undefined ? 8 : 0) + (props ? 4 + props.length : 0) + 4 + m.payload.length;
  const b = Buffer.allocUnsafe(size);
  let o = 0;
  b[o++] = (m.retain ? F_RETAIN : 0) | (m.expiresAt !== undefined ? F_EXPIRES : 0) | (props ? F_PROPS : 0);
  b[o++] = m.qos;
  b.writeUInt16BE(topicLen, o);
  o += 2;
  o += b.write(m.topic, o);
  b.writeUInt16BE(originLen, o);
  o += 2;
  o += b.write(m.origin, o);
  b.writeDoubleBE(m.receivedAt, o);
  o += 8;
  if (m.expiresAt !== undefined) {
    b.writeDoubleBE(m.expiresAt, o);
    o += 8;
  }
  if (props) {
    b.writeUInt32BE(props.length, o);
    o += 4;
    props.copy(b, o);
    o += props.length;
  }
  b.writeUInt32BE(m.payload.length, o);
  o += 4;
  b.set(m.payload, o);
  return b;
}

/** Decodes a message at offset; returns it and the offset after it. Payloads are copied so a message
 *  does not pin the whole frame it arrived in. */
export function decodeMessageAt(b: Buffer, offset: number): [Message, number] {
  let o = offset;
  const flags = b[o++]!;
  const qos = b[o++]! as QoS;
  const topicLen = b.readUInt16BE(o);
  o += 2;
  const topic = b.toString('utf8', o, o + topicLen);
  o += topicLen;
  const originLen = b.readUInt16BE(o);
  o += 2;
  const origin = b.toString('utf8', o, o + originLen);
  o += originLen;
  const receivedAt = b.readDoubleBE(o);
  o += 8;
  const m: Message = { topic, payload: new Uint8Array(0), qos, retain: (flags & F_RETAIN) !== 0, origin, receivedAt };
  if (flags & F_EXPIRES) {
    m.expiresAt = b.readDoubleBE(o);
    o += 8;
  }
  if (flags & F_PROPS) {
    const len = b.readUInt32BE(o);
    o += 4;
    m.properties = fromJson<ForwardedProperties>(b.toString('utf8', o, o + len));
    o += len;
  }
  const payloadLen = b.readUInt32BE(o);
  o += 4;
  m.payload = new Uint8Array(b.subarray(o, o + payloadLen));
  o += payloadLen;
  return [m, o];
}

export function decodeMessage(b: Buffer): Message {
  return decodeMessageAt(b, 0)[0];
}

// Node channel frames. The first byte says what follows.
export const FRAME_DELIVER = 1;
export const FRAME_ACK = 2;
export const FRAME_TAKEOVER = 3;
export const FRAME_HANDOVER = 4;

/** One message's entry in a delivery frame: whether it is for plain routes, and which shared groups. */
export function encodeDelivery(body: Buffer, groups: readonly string[], normal: boolean): Buffer[] {
  let headerLen = 1 + 2 + 4;
  const encoded = groups.map((g) => Buffer.from(g));
  for (const g of encoded) headerLen += 2 + g.length;
  const h = Buffer.allocUnsafe(headerLen);
  let o = 0;
  h[o++] = normal ? 1 : 0;
  h.writeUInt16BE(encoded.length, o);
  o += 2;
  for (const g of encoded) {
    h.writeUInt16BE(g.length, o);
    o += 2;
    g.copy(h, o);
    o += g.length;
  }
  h.writeUInt32BE(body.length, o);
  return [h, body];
}

export function deliveryFrame(parts: Buffer[], count: number): Buffer {
  const head = Buffer.allocUnsafe(5);
  head[0] = FRAME_DELIVER;
  head.writeUInt32BE(count, 1);
  return Buffer.concat([head, ...parts]);
}

export function decodeDeliveries(b: Buffer, visit: (m: Message, groups: string[], normal: boolean) => void): void {
  const count = b.readUInt32BE(1);
  let o = 5;
  for (let i = 0; i < count; i++) {
    const normal = b[o++] === 1;
    const groupCount = b.readUInt16BE(o);
    o += 2;
    const groups: string[] = [];
    for (let g = 0; g < groupCount; g++) {
      const len = b.readUInt16BE(o);
      o += 2;
      groups.push(b.toString('utf8', o, o + len));
      o += len;
    }
    const bodyLen = b.readUInt32BE(o);
    o += 4;
    const [m] = decodeMessageAt(b, o);
    o += bodyLen;
    visit(m, groups, normal);
  }
}

export function controlFrame(type: number, value: unknown): Buffer {
  return Buffer.concat([Buffer.of(type), Buffer.from(JSON.stringify(value))]);
}

export function controlValue<T>(b: Buffer): T {
  return JSON.parse(b.toString('utf8', 1)) as T;
}

/** An owner as one comparable string, so Lua scripts can compare owners without parsing them. */
export function ownerKey(o: SessionOwner): string {
  return JSON.stringify([o.nodeId, o.workerId, o.connId]);
}

export function parseOwner(s: string): SessionOwner {
  const [nodeId, workerId, connId] = JSON.parse(s) as [string, number, number];
  return { nodeId, workerId, connId };
}

/** JSON in which Uint8Arrays (including Buffers, whose toJSON would otherwise win) survive. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key, v: unknown) {
    const raw = this[key];
    if (raw instanceof Uint8Array) return { $b: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') };
    return v;
  });
}

export function fromJson<T>(text: string): T {
  return JSON.parse(text, (_key, v: unknown) => {
    if (v !== null && typeof v === 'object' && typeof (v as { $b?: unknown }).$b === 'string' && Object.keys(v).length === 1)
      return new Uint8Array(Buffer.from((v as { $b: string }).$b, 'base64'));
    return v;
  }) as T;
}
