// QoS 0/1/2 flows in both directions, driven packet by packet with raw sockets.
import mqttPacket, { type IDisconnectPacket, type IPublishPacket, type Packet } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { collect, connectClient, RawClient, uniqueId } from './helpers/clients.ts';
import { connectedWorker, steerNext } from './helpers/placement.ts';

type Version = 4 | 5;

function publish(topic: string, payload: string, qos: 0 | 1 | 2, messageId?: number, extra: Partial<IPublishPacket> = {}): IPublishPacket {
  return { cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, ...(qos > 0 ? { messageId } : {}), ...extra } as IPublishPacket;
}

async function rawClient(port: number, version: Version, connect: Parameters<RawClient['handshake']>[0] = {}): Promise<RawClient> {
  const c = await RawClient.connect(port, version);
  const ack = await c.handshake({ clientId: uniqueId(`q${version}`), ...connect });
  expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(0);
  return c;
}

async function subscribe(c: RawClient, subscriptions: Array<{ topic: string; qos: 0 | 1 | 2 }>, messageId = 1): Promise<void> {
  c.send({ cmd: 'subscribe', messageId, subscriptions });
  const ack = await c.next('suback', 5000, (p) => p.messageId === messageId);
  expect((ack as { granted: number[] }).granted).toEqual(subscriptions.map((s) => s.qos));
}

/** The PUBLISH packets a raw client has received (claimed from its buffer), in arrival order. */
function takePublishes(c: RawClient): IPublishPacket[] {
  const out: IPublishPacket[] = [];
  for (let i = 0; i < c.received.length; ) {
    if (c.received[i]!.cmd === 'publish') out.push(c.received.splice(i, 1)[0] as IPublishPacket);
    else i++;
  }
  return out;
}

/** Round trip on the client's own connection: everything the broker did for earlier packets is written. */
async function ping(c: RawClient): Promise<void> {
  c.send({ cmd: 'pingreq' });
  await c.next('pingresp');
}

describe('QoS flows (2 workers)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2 });
  });
  afterAll(async () => {
    await broker.stop();
  });

  for (const version of [4, 5] as const) {
    it(`v${version === 4 ? '3.1.1' : '5'}: QoS 0, 1 and 2 in both directions — PUBACK, and PUBREC/PUBREL/PUBCOMP [MQTT-4.3.1-1] [MQTT-4.3.2-1] [MQTT-4.3.3-1]`, async () => {
      const topic = `qos/both/${uniqueId()}`;
      const sub = await rawClient(broker.port, version);
      const pub = await rawClient(broker.port, version);
      await subscribe(sub, [{ topic, qos: 2 }]);

      // QoS 0: no packet id, no ack either way.
      pub.send(publish(topic, 'zero', 0));
      const p0 = await sub.next<IPublishPacket>('publish');
      expect(p0.qos).toBe(0);
      expect(p0.messageId).toBeUndefined();
      expect(p0.payload.toString()).toBe('zero');

      // QoS 1: the publisher gets PUBACK; the subscriber gets a QoS 1 PUBLISH with a packet id and acks it.
      pub.send(publish(topic, 'one', 1, 11));
      expect((await pub.next('puback')).messageId).toBe(11);
      const p1 = await sub.next<IPublishPacket>('publish');
      expect(p1.qos).toBe(1);
      expect(p1.dup).toBe(false);
      expect(p1.messageId).toBeGreaterThan(0);
      expect(p1.payload.toString()).toBe('one');
      sub.send({ cmd: 'puback', messageId: p1.messageId });

      // QoS 2 inbound: PUBLISH → PUBREC, PUBREL → PUBCOMP.
      pub.send(publish(topic, 'two', 2, 12));
      expect((await pub.next('pubrec')).messageId).toBe(12);
      pub.send({ cmd: 'pubrel', messageId: 12 });
      expect((await pub.next('pubcomp')).messageId).toBe(12);

      // QoS 2 outbound: PUBLISH → (client) PUBREC → PUBREL → (client) PUBCOMP.
      const p2 = await sub.next<IPublishPacket>('publish');
      expect(p2.qos).toBe(2);
      expect(p2.payload.toString()).toBe('two');
      expect(p2.messageId).not.toBe(p1.messageId); // p1 might still be in flight when p2 was sent
      sub.send({ cmd: 'pubrec', messageId: p2.messageId });
      expect((await sub.next('pubrel')).messageId).toBe(p2.messageId);
      sub.send({ cmd: 'pubcomp', messageId: p2.messageId });

      // Exactly one copy of each arrived.
      await ping(sub);
      expect(takePublishes(sub)).toHaveLength(0);
      sub.destroy();
      pub.destroy();
    });
  }

  it('completing the QoS 1 and QoS 2 flows frees the outbound window (v5 Receive Maximum 1)', async () => {
    const topic = `qos/window1/${uniqueId()}`;
    const sub = await rawClient(broker.port, 5, { properties: { receiveMaximum: 1 } });
    const pub = await rawClient(broker.port, 4);
    await subscribe(sub, [{ topic, qos: 2 }]);
    for (const [i, qos] of ([2, 1, 2] as const).entries()) pub.send(publish(topic, `m${i}`, qos, i + 1));
    for (let i = 0; i < 3; i++) await pub.next(i === 1 ? 'puback' : 'pubrec');

    const first = await sub.next<IPublishPacket>('publish');
    expect([first.payload.toString(), first.qos]).toEqual(['m0', 2]);
    sub.send({ cmd: 'pubrec', messageId: first.messageId });
    await sub.next('pubrel', 5000, (p) => p.messageId === first.messageId);
    // PUBREC alone does not free the slot: the message is in flight until PUBCOMP [MQTT-4.3.3-?].
    await ping(sub);
    expect(takePublishes(sub)).toHaveLength(0);
    sub.send({ cmd: 'pubcomp', messageId: first.messageId });
    const second = await sub.next<IPublishPacket>('publish');
    expect([second.payload.toString(), second.qos]).toEqual(['m1', 1]);
    sub.send({ cmd: 'puback', messageId: second.messageId });
    const third = await sub.next<IPublishPacket>('publish');
    expect([third.payload.toString(), third.qos]).toEqual(['m2', 2]);
    sub.destroy();
    pub.destroy();
  });

  it('a duplicate QoS 2 PUBLISH (same id, DUP) before PUBREL is acknowledged again but delivered once [MQTT-4.3.3-10]', async () => {
    const topic = `qos/dup/${uniqueId()}`;
    const sub = await rawClient(broker.port, 4);
    const pub = await rawClient(broker.port, 4);
    // A QoS 0 subscription: every copy the broker forwards shows up, with no ack to hide it.
    await subscribe(sub, [{ topic, qos: 0 }]);

    pub.send(publish(topic, 'once', 2, 5));
    expect((await pub.next('pubrec')).messageId).toBe(5);
    pub.send(publish(topic, 'once', 2, 5, { dup: true }));
    expect((await pub.next('pubrec')).messageId).toBe(5);
    pub.send(publish(topic, 'once', 2, 5, { dup: true }));
    expect((await pub.next('pubrec')).messageId).toBe(5);
    pub.send({ cmd: 'pubrel', messageId: 5 });
    expect((await pub.next('pubcomp')).messageId).toBe(5);
    // After PUBCOMP the id is free: a new message with id 5 is a new message [MQTT-4.3.3-?].
    pub.send(publish(topic, 'again', 2, 5));
    expect((await pub.next('pubrec')).messageId).toBe(5);
    pub.send({ cmd: 'pubrel', messageId: 5 });
    await pub.next('pubcomp');
    pub.send(publish(topic, 'marker', 0));

    await sub.next('publish', 5000, (p) => (p as IPublishPacket).payload.toString() === 'marker');
    const got = [...takePublishes(sub).map((p) => p.payload.toString())];
    expect(got).toEqual(['once', 'again']);
    sub.destroy();
    pub.destroy();
  });

  it('outbound packet ids are unique among in-flight messages, also after some are acknowledged [MQTT-2.2.1-3]', async () => {
    const topic = `qos/ids/${uniqueId()}`;
    const sub = await rawClient(broker.port, 4);
    const pub = await rawClient(broker.port, 4);
    await subscribe(sub, [{ topic, qos: 2 }]);
    const send = (from: number, n: number) => {
      for (let i = from; i < from + n; i++) pub.send(publish(topic, `m${i}`, i % 2 === 0 ? 1 : 2, (i % 60000) + 1));
    };
    send(0, 40);
    const first: IPublishPacket[] = [];
    for (let i = 0; i < 40; i++) first.push(await sub.next<IPublishPacket>('publish'));
    const inflight = new Set(first.map((p) => p.messageId!));
    expect(inflight.size).toBe(40);
    expect([...inflight].every((id) => id >= 1 && id <= 65535)).toBe(true);

    // Complete every other one (QoS 1: PUBACK; QoS 2: PUBREC + PUBCOMP), keep the rest in flight.
    for (const p of first.filter((_, i) => i % 2 === 0)) {
      if (p.qos === 1) sub.send({ cmd: 'puback', messageId: p.messageId });
      else {
        sub.send({ cmd: 'pubrec', messageId: p.messageId });
        await sub.next('pubrel', 5000, (r) => r.messageId === p.messageId);
        sub.send({ cmd: 'pubcomp', messageId: p.messageId });
      }
      inflight.delete(p.messageId!);
    }
    await ping(sub);
    send(40, 40);
    for (let i = 0; i < 40; i++) {
      const p = await sub.next<IPublishPacket>('publish');
      expect(inflight.has(p.messageId!), `id ${p.messageId} reused while in flight`).toBe(false);
      inflight.add(p.messageId!);
    }
    expect(inflight.size).toBe(60);
    sub.destroy();
    pub.destroy();
  });

  it("the outbound window honours the v5 client's Receive Maximum: 2 of 5 until acked [MQTT-3.3.4-7]", async () => {
    const topic = `qos/rm/${uniqueId()}`;
    const marker = `${topic}/marker`;
    const sub = await rawClient(broker.port, 5, { properties: { receiveMaximum: 2 } });
    const pub = await rawClient(broker.port, 4);
    await subscribe(sub, [
      { topic, qos: 1 },
      { topic: marker, qos: 0 },
    ]);
    for (let i = 0; i < 5; i++) pub.send(publish(topic, `m${i}`, 1, i + 1));
    // QoS 0 is outside the window; after it, the broker has handled all five QoS 1 messages (same
    // publisher, ordered delivery).
    pub.send(publish(marker, 'm', 0));
    await sub.next('publish', 5000, (p) => (p as IPublishPacket).topic === marker);
    let window = takePublishes(sub);
    expect(window.map((p) => p.payload.toString())).toEqual(['m0', 'm1']);

    const seen = window.map((p) => p.payload.toString());
    let outstanding = window.length;
    for (let round = 0; round < 5 && seen.length < 5; round++) {
      // Ack one: exactly one more comes; PINGRESP on the same connection bounds when it must have.
      const acked = window.shift()!;
      sub.send({ cmd: 'puback', messageId: acked.messageId });
      outstanding--;
      await ping(sub);
      const more = takePublishes(sub);
      outstanding += more.length;
      expect(outstanding).toBeLessThanOrEqual(2);
      expect(more.length).toBe(Math.min(1, 5 - seen.length));
      seen.push(...more.map((p) => p.payload.toString()));
      window.push(...more);
    }
    expect(seen).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    sub.destroy();
    pub.destroy();
  });

  it('acknowledgements go out in the order the PUBLISHes arrived, also when some wait on the retained store [MQTT-4.6.0-2] [MQTT-4.6.0-3]', async () => {
    const base = `qos/order/${uniqueId()}`;
    const pub = await rawClient(broker.port, 4);
    // Retained ones are acknowledged only after the hub stored them (asynchronous); plain ones at once.
    const batch: IPublishPacket[] = [
      publish(`${base}/r1`, 'r', 1, 1, { retain: true }),
      publish(`${base}/a`, 'a', 1, 2),
      publish(`${base}/r2`, 'r', 2, 3, { retain: true }),
      publish(`${base}/b`, 'b', 2, 4),
      publish(`${base}/c`, 'c', 1, 5),
      publish(`${base}/r3`, 'r', 1, 6, { retain: true }),
      // A resend of id 4 before PUBREL: its PUBREC too answers in arrival order.
      publish(`${base}/b`, 'b', 2, 4, { dup: true }),
      publish(`${base}/d`, 'd', 1, 7),
    ];
    pub.write(Buffer.concat(batch.map((p) => mqttGenerate(p))));
    const acks: Array<[string, number]> = [];
    for (let i = 0; i < batch.length; i++) {
      const p = await nextAck(pub);
      acks.push([p.cmd, p.messageId!]);
    }
    expect(acks).toEqual([
      ['puback', 1],
      ['puback', 2],
      ['pubrec', 3],
      ['pubrec', 4],
      ['puback', 5],
      ['puback', 6],
      ['pubrec', 4],
      ['puback', 7],
    ]);
    // Clean up the retained messages.
    for (const t of ['r1', 'r2', 'r3']) pub.send(publish(`${base}/${t}`, '', 0, undefined, { retain: true }));
    pub.send({ cmd: 'pubrel', messageId: 3 });
    pub.send({ cmd: 'pubrel', messageId: 4 });
    await pub.next('pubcomp', 5000, (p) => p.messageId === 4);
    pub.destroy();
  });
});

describe('inbound Receive Maximum (--limits.receiveMaximum 2)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--limits.receiveMaximum', '2'] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('CONNACK announces Receive Maximum 2', async () => {
    const c = await RawClient.connect(broker.port, 5);
    const ack = await c.handshake({ clientId: uniqueId('rm') });
    expect(ack.properties?.receiveMaximum).toBe(2);
    c.destroy();
  });

  it('a v5 client with more unacknowledged QoS 2 PUBLISHes than Receive Maximum gets DISCONNECT 0x93 [MQTT-3.3.4-9]', async () => {
    const topic = `qos/inrm/${uniqueId()}`;
    const c = await rawClient(broker.port, 5);
    c.send(publish(topic, 'a', 2, 1));
    c.send(publish(topic, 'b', 2, 2));
    await c.next('pubrec', 5000, (p) => p.messageId === 2);
    // Releasing one makes room for exactly one more.
    c.send({ cmd: 'pubrel', messageId: 1 });
    await c.next('pubcomp', 5000, (p) => p.messageId === 1);
    c.send(publish(topic, 'c', 2, 3));
    await c.next('pubrec', 5000, (p) => p.messageId === 3);
    // Ids 2 and 3 await PUBREL: a third is one too many.
    c.send(publish(topic, 'd', 2, 4));
    const d = await c.next<IDisconnectPacket>('disconnect');
    expect(d.reasonCode).toBe(0x93);
    expect(await c.closedWithin(5000)).toBe(true);
    expect(c.received.some((p) => p.cmd === 'pubrec' && p.messageId === 4)).toBe(false);
  });
});

function mqttGenerate(p: Packet): Buffer {
  return mqttPacket.generate(p, { protocolVersion: 4 });
}

/** The next PUBACK or PUBREC, whichever comes first. */
function nextAck(c: RawClient): Promise<Packet> {
  const idx = c.received.findIndex((p) => p.cmd === 'puback' || p.cmd === 'pubrec');
  if (idx >= 0) return Promise.resolve(c.received.splice(idx, 1)[0]!);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no ack within 5000 ms')), 5000);
    const onData = () => {
      const i = c.received.findIndex((p) => p.cmd === 'puback' || p.cmd === 'pubrec');
      if (i < 0) return;
      clearTimeout(timer);
      c.socket.off('data', onData);
      resolve(c.received.splice(i, 1)[0]!);
    };
    c.socket.on('data', onData);
  });
}

describe('cross-worker ordering (2 workers, --limits.maxInflight 16)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    // A small outbound window: most QoS 1 messages pass through the session queue, QoS 0 ones do not.
    broker = await startBroker({ workers: 2, args: ['--limits.maxInflight', '16'] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('one publisher and one subscriber on different workers: 2,000 QoS 1 and 2,000 QoS 0 messages arrive in order per topic, none missing [MQTT-4.6.0-6]', async () => {
    const N = 2000;
    const base = `order/${uniqueId()}`;
    const subId = uniqueId('order-sub');
    const sub = await connectClient(broker.port, { clientId: subId, protocolVersion: 5 });
    const subWorker = await connectedWorker(broker, subId);
    const inbox = collect(sub);
    await sub.subscribeAsync(`${base}/#`, { qos: 1 });

    const idle = await steerNext(broker, (w) => w !== subWorker);
    const pubId = uniqueId('order-pub');
    const pub = await connectClient(broker.port, { clientId: pubId });
    expect(await connectedWorker(broker, pubId)).not.toBe(subWorker);

    const acks: Array<Promise<unknown>> = [];
    for (let i = 0; i < N; i++) {
      acks.push(pub.publishAsync(`${base}/q1`, String(i), { qos: 1 }));
      void pub.publishAsync(`${base}/q0`, String(i), { qos: 0 });
    }
    await Promise.all(acks);
    const got = await inbox.next(2 * N, 60_000);
    const byTopic = (t: string) => got.filter((m) => m.topic === t).map((m) => Number(m.payload.toString()));
    const expected = Array.from({ length: N }, (_, i) => i);
    expect(byTopic(`${base}/q1`)).toEqual(expected);
    expect(byTopic(`${base}/q0`)).toEqual(expected);
    // QoS 1 copies keep QoS 1 (subscription QoS 1), QoS 0 stays 0.
    expect(got.every((m) => m.packet.qos === (m.topic.endsWith('/q1') ? 1 : 0))).toBe(true);

    await Promise.all([sub.endAsync(), pub.endAsync()]);
    for (const c of idle) c.destroy();
  }, 90_000);
});
