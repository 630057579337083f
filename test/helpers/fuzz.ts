// Hostile input for the broker: valid MQTT packets of every type and protocol version (generated with
// mqtt-packet), mutated at the byte level, sent split at random boundaries. Shared by the bounded suite
// test (test/fuzz-packets.test.ts) and the long run (test/scripts/fuzz.ts).
import net from 'node:net';
import fc from 'fast-check';
import WebSocket from 'ws';
import mqttPacket, { type Packet } from 'mqtt-packet';

export type Version = 3 | 4 | 5;

const topicArb = fc.oneof(
  fc.constantFrom('a', 'a/b', 'fuzz/x', '#', '+', 'a/+/c', 'a/#', '$SYS/x', '$share/g/a', '$share//a', '/', '//', 'a/#/b', '+a', '\u0000', 'fuzz/\u{1F600}'),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
);
const u16 = fc.integer({ min: 0, max: 65535 });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
const userProps = fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }), { nil: undefined });

const publishProps = fc.record(
  {
    payloadFormatIndicator: fc.boolean(),
    messageExpiryInterval: u32,
    topicAlias: u16,
    responseTopic: topicArb,
    correlationData: bytes(16),
    userProperties: userProps,
    subscriptionIdentifier: fc.integer({ min: 0, max: 268_435_455 }),
    contentType: fc.string({ maxLength: 10 }),
  },
  { requiredKeys: [] },
);

function connectArb(v: Version): fc.Arbitrary<Packet> {
  return fc
    .record({
      clientId: fc.oneof(fc.constant(''), fc.string({ maxLength: 30 })),
      clean: fc.boolean(),
      keepalive: fc.oneof(fc.constant(0), fc.constant(1), u16),
      username: fc.option(fc.string({ maxLength: 12 }), { nil: undefined }),
      password: fc.option(bytes(12), { nil: undefined }),
      will: fc.option(fc.record({ topic: topicArb, payload: bytes(32), qos: fc.constantFrom(0, 1, 2, 3), retain: fc.boolean() }), { nil: undefined }),
      properties: fc.option(
        fc.record(
          {
            sessionExpiryInterval: u32,
            receiveMaximum: u16,
            maximumPacketSize: u32,
            topicAliasMaximum: u16,
            requestResponseInformation: fc.boolean(),
            requestProblemInformation: fc.boolean(),
            userProperties: userProps,
            authenticationMethod: fc.string({ maxLength: 8 }),
          },
          { requiredKeys: [] },
        ),
        { nil: undefined },
      ),
    })
    .map((r) => ({
      cmd: 'connect',
      protocolId: v === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: v,
      ...r,
      clientId: r.clientId === '' ? '' : `fz-${r.clientId}`,
      ...(v === 5 ? {} : { properties: undefined }),
    }) as Packet);
}

function packetArb(v: Version): fc.Arbitrary<Packet> {
  const v5 = v === 5;
  const reason = fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined });
  const id = fc.integer({ min: 0, max: 65535 });
  return fc.oneof(
    connectArb(v),
    fc.record({ topic: topicArb, payload: bytes(64), qos: fc.constantFrom(0, 1, 2), retain: fc.boolean(), dup: fc.boolean(), messageId: id, properties: v5 ? fc.option(publishProps, { nil: undefined }) : fc.constant(undefined) }).map((r) => ({ cmd: 'publish', ...r }) as Packet),
    ...(['puback', 'pubrec', 'pubrel', 'pubcomp'] as const).map((cmd) => fc.record({ messageId: id, reasonCode: v5 ? reason : fc.constant(undefined) }).map((r) => ({ cmd, ...r }) as Packet)),
    fc
      .record({
        messageId: id,
        subscriptions: fc.array(fc.record({ topic: topicArb, qos: fc.constantFrom(0, 1, 2), nl: fc.boolean(), rap: fc.boolean(), rh: fc.constantFrom(0, 1, 2) }), { minLength: 0, maxLength: 4 }),
        properties: v5 ? fc.option(fc.record({ subscriptionIdentifier: fc.integer({ min: 0, max: 268_435_455 }), userProperties: userProps }, { requiredKeys: [] }), { nil: undefined }) : fc.constant(undefined),
      })
      .map((r) => ({ cmd: 'subscribe', ...r }) as Packet),
    fc.record({ messageId: id, unsubscriptions: fc.array(topicArb, { maxLength: 4 }) }).map((r) => ({ cmd: 'unsubscribe', ...r }) as Packet),
    fc.constant({ cmd: 'pingreq' } as Packet),
    fc.constant({ cmd: 'pingresp' } as Packet),
    fc.record({ reasonCode: v5 ? reason : fc.constant(undefined), properties: v5 ? fc.option(fc.record({ sessionExpiryInterval: u32 }, { requiredKeys: [] }), { nil: undefined }) : fc.constant(undefined) }).map((r) => ({ cmd: 'disconnect', ...r }) as Packet),
    fc.record({ returnCode: fc.integer({ min: 0, max: 5 }), sessionPresent: fc.boolean() }).map((r) => ({ cmd: 'connack', ...r }) as Packet),
    fc.record({ messageId: id, granted: fc.array(fc.constantFrom(0, 1, 2, 128), { minLength: 1, maxLength: 3 }) }).map((r) => ({ cmd: 'suback', ...r }) as Packet),
    fc.record({ messageId: id }).map((r) => ({ cmd: 'unsuback', ...r }) as Packet),
    ...(v5 ? [fc.record({ reasonCode: fc.constantFrom(0, 0x18, 0x19), properties: fc.record({ authenticationMethod: fc.string({ maxLength: 8 }), authenticationData: bytes(8) }, { requiredKeys: [] }) }).map((r) => ({ cmd: 'auth', ...r }) as Packet)] : []),
  );
}

/** mqtt-packet refuses some combinations: those become raw bytes of their own. */
function encode(p: Packet, v: Version): Buffer {
  try {
    return mqttPacket.generate(p, { protocolVersion: v });
  } catch {
    return Buffer.from(JSON.stringify(p).slice(0, 32));
  }
}

type Mutation =
  | { kind: 'set'; pos: number; byte: number }
  | { kind: 'truncate'; pos: number }
  | { kind: 'insert'; pos: number; data: Buffer }
  | { kind: 'length'; data: Buffer }
  | { kind: 'type'; byte: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), pos: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), pos: fc.nat(), data: bytes(8) }),
  // A different remaining length: random varint bytes, including over-long ones.
  fc.record({ kind: fc.constant('length' as const), data: fc.oneof(bytes(5), fc.constant(Buffer.from([0xff, 0xff, 0xff, 0x7f])), fc.constant(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f])), fc.constant(Buffer.from([0]))) }),
  // A different first byte: packet type and flags.
  fc.record({ kind: fc.constant('type' as const), byte: fc.integer({ min: 0, max: 255 }) }),
);

function mutate(buf: Buffer, m: Mutation): Buffer {
  if (buf.length === 0) return buf;
  switch (m.kind) {
    case 'set': {
      const out = Buffer.from(buf);
      out[m.pos % out.length] = m.byte;
      return out;
    }
    case 'truncate':
      return buf.subarray(0, m.pos % buf.length);
    case 'insert': {
      const at = m.pos % (buf.length + 1);
      return Buffer.concat([buf.subarray(0, at), m.data, buf.subarray(at)]);
    }
    case 'length': {
      // Skip the existing varint (1..4 bytes after the first byte).
      let i = 1;
      while (i < buf.length && i < 5 && (buf[i]! & 0x80) !== 0) i++;
      return Buffer.concat([buf.subarray(0, 1), m.data, buf.subarray(Math.min(i + 1, buf.length))]);
    }
    case 'type': {
      const out = Buffer.from(buf);
      out[0] = m.byte;
      return out;
    }
  }
}

export interface FuzzCase {
  version: Version;
  /** A valid CONNECT first (keepalive 1), so the packets after it reach the post-CONNECT handlers. */
  connectFirst: boolean;
  bytes: Buffer;
  /** Chunk sizes the bytes are written in (each write on its own turn). */
  splits: number[];
}

export const fuzzCaseArb: fc.Arbitrary<FuzzCase> = fc
  .constantFrom<Version>(3, 4, 5)
  .chain((version) =>
    fc.record({
      version: fc.constant(version),
      connectFirst: fc.boolean(),
      parts: fc.array(
        fc.oneof(
          { weight: 6, arbitrary: fc.tuple(packetArb(version), fc.array(mutationArb, { maxLength: 3 })).map(([p, ms]) => ms.reduce(mutate, encode(p, version))) },
          { weight: 1, arbitrary: bytes(64) },
        ),
        { minLength: 1, maxLength: 6 },
      ),
      splits: fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 8 }),
    }),
  )
  .map((r) => ({ version: r.version, connectFirst: r.connectFirst, bytes: Buffer.concat(r.parts), splits: r.splits }));

let caseSeq = 0;

export interface CaseOutcome {
  answered: boolean;
  closed: boolean;
}

/**
 * The same case over MQTT-over-WebSocket: each chunk one binary frame (an MQTT packet may span frames,
 * a frame may hold several packets).
 */
export async function runWsCase(port: number, c: FuzzCase, timeoutMs = 8000, path = '/mqtt'): Promise<CaseOutcome> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, ['mqtt']);
  let answered = false;
  let closed = false;
  let settle: () => void = () => undefined;
  let done = new Promise<void>((resolve) => (settle = resolve));
  ws.on('message', () => {
    answered = true;
    settle();
  });
  ws.on('error', () => undefined);
  ws.on('close', () => {
    closed = true;
    settle();
  });
  const opened = await new Promise<boolean>((resolve) => {
    ws.once('open', () => resolve(true));
    ws.once('close', () => resolve(false));
  });
  if (!opened) return { answered, closed: true };
  const wait = async (): Promise<void> => {
    let t: NodeJS.Timeout | undefined;
    await Promise.race([done, new Promise<void>((r) => (t = setTimeout(r, timeoutMs)))]);
    clearTimeout(t);
  };
  if (c.connectFirst) {
    ws.send(mqttPacket.generate({ cmd: 'connect', protocolId: c.version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: c.version, clientId: `fuzzws-${process.pid}-${++caseSeq}`, clean: true, keepalive: 1 }, { protocolVersion: c.version }));
    await wait();
    if (closed || !answered) {
      ws.terminate();
      return { answered, closed };
    }
    answered = false;
    done = new Promise<void>((resolve) => (settle = resolve));
  }
  let off = 0;
  for (const size of c.splits) {
    if (off >= c.bytes.length || closed) break;
    ws.send(c.bytes.subarray(off, off + size));
    off += size;
    await new Promise((r) => setImmediate(r));
  }
  if (off < c.bytes.length && !closed) ws.send(c.bytes.subarray(off));
  await wait();
  if (answered && !closed) await new Promise((r) => setTimeout(r, 50));
  ws.terminate();
  return { answered, closed };
}

/**
 * Sends one case on its own connection; resolves once the broker answered (any bytes) or closed it,
 * or after `timeoutMs` (then neither; a failure for the caller).
 */
export async function runCase(port: number, c: FuzzCase, timeoutMs = 8000): Promise<CaseOutcome> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  let answered = false;
  let closed = false;
  let settle: () => void = () => undefined;
  let done = new Promise<void>((resolve) => (settle = resolve));
  socket.on('data', () => {
    answered = true;
    settle();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    closed = true;
    settle();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('close', () => reject(new Error('refused at connect')));
  }).catch(() => undefined);
  if (closed) return { answered, closed };
  const stream = c.bytes;
  if (c.connectFirst) {
    // Connected first (CONNACK awaited), so the fuzzed packets reach the post-CONNECT handlers; keepalive 1
    // makes the broker close a connection left mid-packet within 1.5 s. The answer that counts comes after.
    const connect = mqttPacket.generate(
      { cmd: 'connect', protocolId: c.version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: c.version, clientId: `fuzz-${process.pid}-${++caseSeq}`, clean: true, keepalive: 1 },
      { protocolVersion: c.version },
    );
    const connack = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write(connect);
    let t: NodeJS.Timeout | undefined;
    await Promise.race([connack, done, new Promise<void>((r) => (t = setTimeout(r, timeoutMs)))]);
    clearTimeout(t);
    if (closed || !answered) {
      socket.destroy();
      return { answered, closed };
    }
    answered = false;
    done = new Promise<void>((resolve) => (settle = resolve));
  }
  let off = 0;
  for (const size of c.splits) {
    if (off >= stream.length || socket.destroyed) break;
    socket.write(stream.subarray(off, off + size));
    off += size;
    await new Promise((r) => setImmediate(r));
  }
  if (off < stream.length && !socket.destroyed) socket.write(stream.subarray(off));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
  // Give the broker a moment to process what followed the first answer, then leave.
  if (answered && !closed) await new Promise((r) => setTimeout(r, 50));
  socket.destroy();
  return { answered, closed };
}

/** A well-behaved client that must keep working whatever the fuzz connections do. */
export class Canary {
  private readonly socket: net.Socket;
  private readonly parser = mqttPacket.parser({ protocolVersion: 4 });
  private readonly topic = `canary/${process.pid}/${Math.random().toString(36).slice(2)}`;
  private waiting: ((p: Packet) => void) | null = null;
  private seq = 0;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.parser.on('packet', (p: Packet) => this.waiting?.(p));
    socket.on('data', (d: Buffer) => this.parser.parse(d));
    socket.on('error', () => undefined);
  }

  static async open(port: number): Promise<Canary> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new Canary(socket);
    c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: `canary-${process.pid}-${Date.now()}`, clean: true, keepalive: 0 });
    await c.await((p) => p.cmd === 'connack');
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: c.topic, qos: 1 }] });
    await c.await((p) => p.cmd === 'suback');
    return c;
  }

  private send(p: Packet): void {
    this.socket.write(mqttPacket.generate(p, { protocolVersion: 4 }));
  }

  private await(pred: (p: Packet) => boolean, timeoutMs = 10_000): Promise<Packet> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error('canary: no answer within 10 s'));
      }, timeoutMs);
      this.waiting = (p) => {
        if (!pred(p)) return;
        clearTimeout(timer);
        this.waiting = null;
        resolve(p);
      };
    });
  }

  /** Publishes QoS 1 to itself: resolves once both the PUBACK and the message came back. */
  async roundTrip(): Promise<void> {
    const id = (this.seq++ % 60000) + 2;
    const payload = `ping-${id}`;
    let puback = false;
    let message = false;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error(`canary: round trip ${id} incomplete (puback ${puback}, message ${message})`));
      }, 10_000);
      this.waiting = (p) => {
        if (p.cmd === 'puback' && p.messageId === id) puback = true;
        if (p.cmd === 'publish' && p.payload.toString() === payload) {
          message = true;
          if (p.qos === 1) this.send({ cmd: 'puback', messageId: p.messageId! });
        }
        if (puback && message) {
          clearTimeout(timer);
          this.waiting = null;
          resolve();
        }
      };
      this.send({ cmd: 'publish', topic: this.topic, payload: Buffer.from(payload), qos: 1, messageId: id, retain: false, dup: false });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
