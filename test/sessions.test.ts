// Sessions across connections: clean start, persistence and queueing offline, redelivery on resume,
// v5 expiry, the offline queue bound, and takeover by a second connection (also across workers).
import type { IConnackPacket, IDisconnectPacket, IPublishPacket } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess, type LogLine } from './helpers/broker.ts';
import { RawClient, uniqueId } from './helpers/clients.ts';
import { metricValue, scrape } from './helpers/metrics.ts';
import { connectedWorker, connectionsPerWorker, steerNext } from './helpers/placement.ts';

type Version = 4 | 5;
const label = (v: Version) => (v === 4 ? 'v3.1.1' : 'v5');

function publish(topic: string, payload: string, qos: 0 | 1 | 2, messageId?: number): IPublishPacket {
  return { cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, ...(qos > 0 ? { messageId } : {}) } as IPublishPacket;
}

/** CONNECT fields for a session that persists (v3.1.1 clean session 0, v5 Session Expiry Interval) or not. */
function sessionFields(version: Version, clientId: string, persistent: boolean, expiry = 300): Parameters<RawClient['handshake']>[0] {
  if (version === 4) return { clientId, clean: !persistent };
  return { clientId, clean: !persistent, properties: persistent ? { sessionExpiryInterval: expiry } : {} };
}

async function open(port: number, version: Version, fields: Parameters<RawClient['handshake']>[0]): Promise<{ c: RawClient; ack: IConnackPacket }> {
  const c = await RawClient.connect(port, version);
  const ack = await c.handshake(fields);
  expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(0);
  return { c, ack };
}

async function subscribe(c: RawClient, subscriptions: Array<{ topic: string; qos: 0 | 1 | 2 }>, messageId = 1): Promise<void> {
  c.send({ cmd: 'subscribe', messageId, subscriptions });
  await c.next('suback', 5000, (p) => p.messageId === messageId);
}

/** A clean DISCONNECT, awaiting the broker closing the socket. */
async function disconnect(c: RawClient, properties?: { sessionExpiryInterval?: number }): Promise<void> {
  c.send(c.version === 5 ? { cmd: 'disconnect', reasonCode: 0, ...(properties ? { properties } : {}) } : { cmd: 'disconnect' });
  expect(await c.closedWithin(5000)).toBe(true);
}

async function ping(c: RawClient): Promise<void> {
  c.send({ cmd: 'pingreq' });
  await c.next('pingresp');
}

function takePublishes(c: RawClient): IPublishPacket[] {
  const out: IPublishPacket[] = [];
  for (let i = 0; i < c.received.length; ) {
    if (c.received[i]!.cmd === 'publish') out.push(c.received.splice(i, 1)[0] as IPublishPacket);
    else i++;
  }
  return out;
}

/** Repeats `check` (bounded in time) until it returns true: for state only /metrics shows. */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function metric(broker: BrokerProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue(await scrape(broker.metricsPort), name, labels);
}

/** Publishes QoS>0 messages from a fresh connection and waits until the broker queued `expectQueued` more in all. */
async function publishWhileOffline(broker: BrokerProcess, topic: string, items: Array<[string, 1 | 2]>, expectQueued = items.length): Promise<void> {
  const before = await metric(broker, 'starling_queued_messages');
  const { c: pub } = await open(broker.port, 4, { clientId: uniqueId('pub') });
  for (const [i, [payload, qos]] of items.entries()) {
    pub.send(publish(topic, payload, qos, i + 1));
    await pub.next(qos === 1 ? 'puback' : 'pubrec', 5000, (p) => p.messageId === i + 1);
    if (qos === 2) {
      pub.send({ cmd: 'pubrel', messageId: i + 1 });
      await pub.next('pubcomp', 5000, (p) => p.messageId === i + 1);
    }
  }
  await disconnect(pub);
  // The PUBACK means routed to the session's worker; the gauge shows when it is queued there.
  await eventually(async () => (await metric(broker, 'starling_queued_messages')) >= before + expectQueued, `${expectQueued} queued`);
}

describe('sessions (2 workers)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2 });
  });
  afterAll(async () => {
    await broker.stop();
  });

  for (const version of [4, 5] as const) {
    it(`${label(version)}: Clean Start / Clean Session 1 discards the previous session: Session Present 0, no old subscriptions or queued messages [MQTT-3.2.2-2] [MQTT-3.1.2-4]`, async () => {
      const clientId = uniqueId('clean');
      const topic = `sess/clean/${clientId}`;
      const first = await open(broker.port, version, sessionFields(version, clientId, true));
      expect(first.ack.sessionPresent).toBe(false);
      await subscribe(first.c, [{ topic, qos: 1 }]);
      await disconnect(first.c);
      await publishWhileOffline(broker, topic, [['queued', 1]]);

      const second = await open(broker.port, version, sessionFields(version, clientId, false));
      expect(second.ack.sessionPresent).toBe(false);
      await subscribe(second.c, [{ topic: `${topic}/marker`, qos: 0 }]);
      const { c: pub } = await open(broker.port, 4, { clientId: uniqueId('pub') });
      pub.send(publish(topic, 'after', 1, 1));
      await pub.next('puback');
      pub.send(publish(`${topic}/marker`, 'marker', 0));
      await second.c.next('publish', 5000, (p) => (p as IPublishPacket).topic === `${topic}/marker`);
      // Neither the queued message nor one matching the old subscription arrived.
      expect(takePublishes(second.c)).toHaveLength(0);
      await disconnect(second.c);

      // The clean session ended with its connection: nothing to resume afterwards either [MQTT-3.1.2-6].
      const third = await open(broker.port, version, sessionFields(version, clientId, true));
      expect(third.ack.sessionPresent).toBe(false);
      await disconnect(third.c, version === 5 ? { sessionExpiryInterval: 0 } : undefined);
      pub.destroy();
    });

    it(`${label(version)}: a persistent session keeps subscriptions and queues QoS 1/2 messages while offline; Session Present 1 on return [MQTT-3.2.2-3] [MQTT-3.1.2-5]`, async () => {
      const clientId = uniqueId('persist');
      const topic = `sess/persist/${clientId}`;
      const first = await open(broker.port, version, sessionFields(version, clientId, true));
      await subscribe(first.c, [
        { topic: `${topic}/q1`, qos: 1 },
        { topic: `${topic}/q2`, qos: 2 },
      ]);
      await disconnect(first.c);
      await publishWhileOffline(broker, `${topic}/q1`, [['a', 1], ['b', 2]], 2); // 'b' downgraded to QoS 1
      await publishWhileOffline(broker, `${topic}/q2`, [['c', 2], ['d', 1]], 2);

      const back = await open(broker.port, version, sessionFields(version, clientId, true));
      expect(back.ack.sessionPresent).toBe(true);
      const got: IPublishPacket[] = [];
      for (let i = 0; i < 4; i++) got.push(await back.c.next<IPublishPacket>('publish'));
      expect(got.map((p) => [p.topic, p.payload.toString(), p.qos])).toEqual([
        [`${topic}/q1`, 'a', 1],
        [`${topic}/q1`, 'b', 1],
        [`${topic}/q2`, 'c', 2],
        [`${topic}/q2`, 'd', 1],
      ]);
      for (const p of got) {
        if (p.qos === 1) back.c.send({ cmd: 'puback', messageId: p.messageId });
        else {
          back.c.send({ cmd: 'pubrec', messageId: p.messageId });
          await back.c.next('pubrel', 5000, (r) => r.messageId === p.messageId);
          back.c.send({ cmd: 'pubcomp', messageId: p.messageId });
        }
      }
      // The subscriptions are live on the new connection, wherever it landed.
      const { c: pub } = await open(broker.port, 4, { clientId: uniqueId('pub') });
      pub.send(publish(`${topic}/q1`, 'live', 1, 1));
      const live = await back.c.next<IPublishPacket>('publish');
      expect(live.payload.toString()).toBe('live');
      back.c.send({ cmd: 'puback', messageId: live.messageId });
      await disconnect(back.c, version === 5 ? { sessionExpiryInterval: 0 } : undefined);
      pub.destroy();
    });

    it(`${label(version)}: unacknowledged outbound messages are resent on resume with DUP 1 and their original ids, PUBREL too, in order [MQTT-4.4.0-1] [MQTT-4.6.0-1]`, async () => {
      const clientId = uniqueId('resend');
      const topic = `sess/resend/${clientId}`;
      const first = await open(broker.port, version, sessionFields(version, clientId, true));
      await subscribe(first.c, [
        { topic: `${topic}/two`, qos: 2 },
        { topic: `${topic}/one`, qos: 1 },
      ]);
      const { c: pub } = await open(broker.port, 4, { clientId: uniqueId('pub') });
      pub.send(publish(`${topic}/one`, 'a', 1, 1));
      pub.send(publish(`${topic}/two`, 'b', 2, 2));
      pub.send(publish(`${topic}/two`, 'c', 2, 3));
      // Published at QoS 2 on a QoS 1 subscription: in flight at QoS 1, and resent at QoS 1 [MQTT-3.8.4-6].
      pub.send(publish(`${topic}/one`, 'd', 2, 4));
      const sent: IPublishPacket[] = [];
      for (let i = 0; i < 4; i++) sent.push(await first.c.next<IPublishPacket>('publish'));
      expect(sent.map((p) => [p.payload.toString(), p.qos, p.dup])).toEqual([
        ['a', 1, false],
        ['b', 2, false],
        ['c', 2, false],
        ['d', 1, false],
      ]);
      // 'c' gets as far as PUBREL; nothing else is acknowledged.
      const c = sent[2]!;
      first.c.send({ cmd: 'pubrec', messageId: c.messageId });
      await first.c.next('pubrel', 5000, (p) => p.messageId === c.messageId);
      first.c.destroy(); // the network goes away: no DISCONNECT

      const back = await open(broker.port, version, sessionFields(version, clientId, true));
      expect(back.ack.sessionPresent).toBe(true);
      // Everything resent on resume is written before the answer to a PINGREQ sent after CONNACK.
      await ping(back.c);
      const resent = back.c.received.filter((p) => p.cmd === 'publish' || p.cmd === 'pubrel');
      // Original order: a, b, (PUBREL for c), d — 'c' itself is never sent again.
      expect(resent.map((p) => (p.cmd === 'publish' ? [p.cmd, p.payload.toString(), p.qos, p.dup, p.messageId] : [p.cmd, p.messageId]))).toEqual([
        ['publish', 'a', 1, true, sent[0]!.messageId],
        ['publish', 'b', 2, true, sent[1]!.messageId],
        ['pubrel', c.messageId],
        ['publish', 'd', 1, true, sent[3]!.messageId],
      ]);
      await disconnect(back.c, version === 5 ? { sessionExpiryInterval: 0 } : undefined);
      pub.destroy();
    });
  }

  it('v5: after the Session Expiry Interval the offline session is gone: Session Present 0, no subscriptions [MQTT-3.1.2-23]', async () => {
    const clientId = uniqueId('expire');
    const topic = `sess/expire/${clientId}`;
    const first = await open(broker.port, 5, sessionFields(5, clientId, true, 1));
    await subscribe(first.c, [{ topic, qos: 1 }]);
    await disconnect(first.c);
    // The worker's sweep drops it about 1 s later; it logs that (debug).
    await broker.waitForLog((l) => l.msg === 'session expired' && l.clientId === clientId, 10_000);

    const back = await open(broker.port, 5, sessionFields(5, clientId, true, 300));
    expect(back.ack.sessionPresent).toBe(false);
    await subscribe(back.c, [{ topic: `${topic}/marker`, qos: 0 }]);
    const { c: pub } = await open(broker.port, 4, { clientId: uniqueId('pub') });
    pub.send(publish(topic, 'old-subscription', 1, 1));
    await pub.next('puback');
    pub.send(publish(`${topic}/marker`, 'marker', 0));
    await back.c.next('publish', 5000, (p) => (p as IPublishPacket).topic === `${topic}/marker`);
    expect(takePublishes(back.c)).toHaveLength(0);
    await disconnect(back.c, { sessionExpiryInterval: 0 });
    pub.destroy();
  });

  it("v5: on resume, unacknowledged messages are resent within the new connection's Receive Maximum, keeping their ids [MQTT-3.3.4-7] [MQTT-4.4.0-1]", async () => {
    const clientId = uniqueId('resend-rm');
    const topic = `sess/resend-rm/${clientId}`;
    const first = await open(broker.port, 5, { clientId, clean: true, properties: { sessionExpiryInterval: 300, receiveMaximum: 5 } });
    await subscribe(first.c, [{ topic, qos: 1 }]);
    const { c: pub } = await open(broker.port, 4, { clientId: uniqueId('pub') });
    for (let i = 0; i < 5; i++) pub.send(publish(topic, `m${i}`, 1, i + 1));
    const sent: IPublishPacket[] = [];
    for (let i = 0; i < 5; i++) sent.push(await first.c.next<IPublishPacket>('publish'));
    first.c.destroy();

    const back = await open(broker.port, 5, { clientId, clean: false, properties: { sessionExpiryInterval: 300, receiveMaximum: 2 } });
    expect(back.ack.sessionPresent).toBe(true);
    const seen: IPublishPacket[] = [];
    for (let round = 0; round < 6 && seen.length < 5; round++) {
      await ping(back.c);
      const now = takePublishes(back.c);
      // Never more unacknowledged than the new Receive Maximum, whatever was in flight before.
      expect(now.length, `round ${round}`).toBe(round === 0 ? 2 : 1);
      seen.push(...now);
      // Ack one: in round 0 the second stays unacknowledged, so the window stays full throughout.
      back.c.send({ cmd: 'puback', messageId: now[0]!.messageId });
    }
    expect(seen.map((p) => [p.payload.toString(), p.dup, p.messageId])).toEqual(sent.map((p) => [p.payload.toString(), true, p.messageId]));
    await disconnect(back.c, { sessionExpiryInterval: 0 });
    pub.destroy();
  });

  it('v5: a session within its Session Expiry Interval is resumed (Session Present 1)', async () => {
    const clientId = uniqueId('within');
    const first = await open(broker.port, 5, sessionFields(5, clientId, true, 300));
    await disconnect(first.c);
    const back = await open(broker.port, 5, sessionFields(5, clientId, true, 300));
    expect(back.ack.sessionPresent).toBe(true);
    await disconnect(back.c, { sessionExpiryInterval: 0 });
  });

  it('v5: DISCONNECT with Session Expiry Interval 0 ends a persistent session at once [MQTT-3.14.2-1]', async () => {
    const clientId = uniqueId('disc0');
    const first = await open(broker.port, 5, sessionFields(5, clientId, true, 300));
    await subscribe(first.c, [{ topic: `sess/disc0/${clientId}`, qos: 1 }]);
    await disconnect(first.c, { sessionExpiryInterval: 0 });
    const back = await open(broker.port, 5, sessionFields(5, clientId, true, 300));
    expect(back.ack.sessionPresent).toBe(false);
    await disconnect(back.c, { sessionExpiryInterval: 0 });
  });

  it('v5: DISCONNECT can lengthen the Session Expiry Interval: the session outlives one that kept 1 s', async () => {
    const keptId = uniqueId('lengthened');
    const shortId = uniqueId('short');
    const kept = await open(broker.port, 5, sessionFields(5, keptId, true, 1));
    const short = await open(broker.port, 5, sessionFields(5, shortId, true, 1));
    await disconnect(kept.c, { sessionExpiryInterval: 300 });
    await disconnect(short.c);
    // The 1 s session that ended later has expired: so would ours have, without the DISCONNECT property.
    await broker.waitForLog((l) => l.msg === 'session expired' && l.clientId === shortId, 10_000);
    const back = await open(broker.port, 5, sessionFields(5, keptId, true, 300));
    expect(back.ack.sessionPresent).toBe(true);
    await disconnect(back.c, { sessionExpiryInterval: 0 });
  });

  it('v5: DISCONNECT setting a non-zero Session Expiry Interval when CONNECT had 0 is a protocol error: DISCONNECT 0x82 [MQTT-3.14.2-2]', async () => {
    const clientId = uniqueId('zero');
    const first = await open(broker.port, 5, sessionFields(5, clientId, false));
    await subscribe(first.c, [{ topic: `sess/zero/${clientId}`, qos: 1 }]);
    first.c.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 60 } });
    const d = await first.c.next<IDisconnectPacket>('disconnect');
    expect(d.reasonCode).toBe(0x82);
    expect(await first.c.closedWithin(5000)).toBe(true);
    // And the session did not become persistent.
    const back = await open(broker.port, 5, sessionFields(5, clientId, true, 300));
    expect(back.ack.sessionPresent).toBe(false);
    await disconnect(back.c, { sessionExpiryInterval: 0 });
  });
});

describe('offline queue bound (--limits.maxQueued 5)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--limits.maxQueued', '5'] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('keeps at most 5 messages for an offline session and counts the rest as dropped{cause="queue_full"}', async () => {
    const clientId = uniqueId('bounded');
    const topic = `sess/bounded/${clientId}`;
    const first = await open(broker.port, 4, sessionFields(4, clientId, true));
    await subscribe(first.c, [{ topic, qos: 1 }]);
    await disconnect(first.c);
    const droppedBefore = await metric(broker, 'starling_messages_dropped_total', { cause: 'queue_full' });

    const items = Array.from({ length: 8 }, (_, i) => [`m${i}`, 1] as [string, 1]);
    await publishWhileOffline(broker, topic, items, 5);
    await eventually(async () => (await metric(broker, 'starling_messages_dropped_total', { cause: 'queue_full' })) - droppedBefore === 3, 'queue_full drops');
    expect(await metric(broker, 'starling_queued_messages')).toBe(5);

    const back = await open(broker.port, 4, sessionFields(4, clientId, true));
    expect(back.ack.sessionPresent).toBe(true);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const p = await back.c.next<IPublishPacket>('publish');
      got.push(p.payload.toString());
      back.c.send({ cmd: 'puback', messageId: p.messageId });
    }
    await ping(back.c);
    expect(takePublishes(back.c)).toHaveLength(0);
    expect(got).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect((await metric(broker, 'starling_messages_dropped_total', { cause: 'queue_full' })) - droppedBefore).toBe(3);
    back.c.destroy();
  });
});

describe('takeover by a second connection with the same client id (2 workers)', () => {
  let broker: BrokerProcess;
  const seen = new Set<LogLine>();
  beforeAll(async () => {
    broker = await startBroker({ workers: 2 });
  });
  afterAll(async () => {
    await broker.stop();
  });

  /** Waits until no connection is open, so the pool's placement is predictable from the gauge. */
  async function settled(): Promise<void> {
    await eventually(async () => [...(await connectionsPerWorker(broker)).values()].every((n) => n === 0), 'all connections closed');
  }

  for (const placement of ['different', 'same'] as const) {
    it(`v5 persistent session on the ${placement} worker: the old connection gets DISCONNECT 0x8E and is closed; subscriptions, in-flight and queued messages move [MQTT-3.1.4-3]`, async () => {
      await settled();
      const clientId = uniqueId(`take-${placement}`);
      const topic = `sess/take/${clientId}`;
      // Receive Maximum 1: one message in flight, the rest queued on the old connection's session.
      const old = await open(broker.port, 5, { clientId, clean: true, properties: { sessionExpiryInterval: 300, receiveMaximum: 1 } });
      const oldWorker = await connectedWorker(broker, clientId, seen);
      await subscribe(old.c, [
        { topic, qos: 1 },
        { topic: `${topic}/marker`, qos: 0 },
      ]);
      const { c: pub } = await open(broker.port, 4, { clientId: uniqueId('pub') });
      for (let i = 0; i < 3; i++) {
        pub.send(publish(topic, `m${i}`, 1, i + 1));
        await pub.next('puback', 5000, (p) => p.messageId === i + 1);
      }
      pub.send(publish(`${topic}/marker`, 'marker', 0));
      await old.c.next('publish', 5000, (p) => (p as IPublishPacket).topic === `${topic}/marker`);
      const inflight = takePublishes(old.c);
      expect(inflight.map((p) => p.payload.toString())).toEqual(['m0']);

      const idle = await steerNext(broker, (w) => (placement === 'different' ? w !== oldWorker : w === oldWorker));
      const next = await open(broker.port, 5, { clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
      const newWorker = await connectedWorker(broker, clientId, seen);
      if (placement === 'different') expect(newWorker).not.toBe(oldWorker);
      else expect(newWorker).toBe(oldWorker);

      const d = await old.c.next<IDisconnectPacket>('disconnect');
      expect(d.reasonCode).toBe(0x8e);
      expect(await old.c.closedWithin(5000)).toBe(true);
      expect(next.ack.sessionPresent).toBe(true);

      // The in-flight message again (DUP, same id), then the queued ones.
      const again = await next.c.next<IPublishPacket>('publish');
      expect([again.payload.toString(), again.dup, again.messageId]).toEqual(['m0', true, inflight[0]!.messageId]);
      const rest = [await next.c.next<IPublishPacket>('publish'), await next.c.next<IPublishPacket>('publish')];
      expect(rest.map((p) => [p.payload.toString(), p.dup])).toEqual([
        ['m1', false],
        ['m2', false],
      ]);
      for (const p of [again, ...rest]) next.c.send({ cmd: 'puback', messageId: p.messageId });
      // The subscription moved with the session.
      pub.send(publish(topic, 'm3', 1, 4));
      expect((await next.c.next<IPublishPacket>('publish')).payload.toString()).toBe('m3');

      const takeovers = await metric(broker, 'starling_session_takeovers_total');
      expect(takeovers).toBeGreaterThanOrEqual(1);
      await disconnect(next.c, { sessionExpiryInterval: 0 });
      pub.destroy();
      for (const c of idle) c.destroy();
    });
  }

  it('v5 offline session held by another worker moves to the new connection with its queued messages', async () => {
    await settled();
    const clientId = uniqueId('take-offline');
    const topic = `sess/take-offline/${clientId}`;
    const old = await open(broker.port, 5, { clientId, clean: true, properties: { sessionExpiryInterval: 300 } });
    const oldWorker = await connectedWorker(broker, clientId, seen);
    await subscribe(old.c, [{ topic, qos: 1 }]);
    await disconnect(old.c);
    await publishWhileOffline(broker, topic, [['q0', 1], ['q1', 1]]);
    const idle = await steerNext(broker, (w) => w !== oldWorker);
    const next = await open(broker.port, 5, { clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
    expect(await connectedWorker(broker, clientId, seen)).not.toBe(oldWorker);
    expect(next.ack.sessionPresent).toBe(true);
    const got = [await next.c.next<IPublishPacket>('publish'), await next.c.next<IPublishPacket>('publish')];
    expect(got.map((p) => p.payload.toString())).toEqual(['q0', 'q1']);
    await disconnect(next.c, { sessionExpiryInterval: 0 });
    for (const c of idle) c.destroy();
  });

  it('inbound QoS 2 state moves with the session: a PUBLISH resent (DUP) after reconnecting on another worker is not delivered twice, PUBREL completes it [MQTT-4.3.3-10] [MQTT-4.4.0-1]', async () => {
    await settled();
    const clientId = uniqueId('qos2-move');
    const topic = `sess/qos2-move/${clientId}`;
    const { c: sub } = await open(broker.port, 4, { clientId: uniqueId('sub') });
    await subscribe(sub, [{ topic, qos: 0 }]);
    const first = await open(broker.port, 4, { clientId, clean: false });
    const firstWorker = await connectedWorker(broker, clientId, seen);
    first.c.send(publish(topic, 'once', 2, 9));
    await first.c.next('pubrec', 5000, (p) => p.messageId === 9);
    expect((await sub.next<IPublishPacket>('publish')).payload.toString()).toBe('once');
    await disconnect(first.c); // the PUBREL was never sent

    const idle = await steerNext(broker, (w) => w !== firstWorker);
    const back = await open(broker.port, 4, { clientId, clean: false });
    expect(await connectedWorker(broker, clientId, seen)).not.toBe(firstWorker);
    expect(back.ack.sessionPresent).toBe(true);
    back.c.send({ ...publish(topic, 'once', 2, 9), dup: true });
    await back.c.next('pubrec', 5000, (p) => p.messageId === 9);
    back.c.send({ cmd: 'pubrel', messageId: 9 });
    await back.c.next('pubcomp', 5000, (p) => p.messageId === 9);
    back.c.send(publish(topic, 'marker', 0));
    await sub.next('publish', 5000, (p) => (p as IPublishPacket).payload.toString() === 'marker');
    expect(takePublishes(sub)).toHaveLength(0);
    back.c.destroy();
    sub.destroy();
    const clean = await open(broker.port, 4, { clientId, clean: true });
    await disconnect(clean.c);
    for (const c of idle) c.destroy();
  });

  it('v3.1.1: the existing connection is closed (no DISCONNECT in 3.1.1) and the new one resumes the session [MQTT-3.1.4-2]', async () => {
    await settled();
    const clientId = uniqueId('take311');
    const topic = `sess/take311/${clientId}`;
    const old = await open(broker.port, 4, { clientId, clean: false });
    const oldWorker = await connectedWorker(broker, clientId, seen);
    await subscribe(old.c, [{ topic, qos: 1 }]);
    const idle = await steerNext(broker, (w) => w !== oldWorker);
    const next = await open(broker.port, 4, { clientId, clean: false });
    expect(await connectedWorker(broker, clientId, seen)).not.toBe(oldWorker);
    expect(await old.c.closedWithin(5000)).toBe(true);
    expect(old.c.received.some((p) => p.cmd === 'disconnect')).toBe(false);
    expect(next.ack.sessionPresent).toBe(true);
    const { c: pub } = await open(broker.port, 4, { clientId: uniqueId('pub') });
    pub.send(publish(topic, 'after', 1, 1));
    expect((await next.c.next<IPublishPacket>('publish')).payload.toString()).toBe('after');
    next.c.destroy();
    // Clean up the persistent session.
    const clean = await open(broker.port, 4, { clientId, clean: true });
    await disconnect(clean.c);
    pub.destroy();
    for (const c of idle) c.destroy();
  });

  it('v5 takeover with Clean Start 1: the old connection gets 0x8E and the old session is discarded (Session Present 0)', async () => {
    await settled();
    const clientId = uniqueId('take-clean');
    const topic = `sess/take-clean/${clientId}`;
    const old = await open(broker.port, 5, { clientId, clean: true, properties: { sessionExpiryInterval: 300 } });
    const oldWorker = await connectedWorker(broker, clientId, seen);
    await subscribe(old.c, [{ topic, qos: 1 }]);
    const idle = await steerNext(broker, (w) => w !== oldWorker);
    const next = await open(broker.port, 5, { clientId, clean: true });
    expect(await connectedWorker(broker, clientId, seen)).not.toBe(oldWorker);
    expect((await old.c.next<IDisconnectPacket>('disconnect')).reasonCode).toBe(0x8e);
    expect(next.ack.sessionPresent).toBe(false);
    await subscribe(next.c, [{ topic: `${topic}/marker`, qos: 0 }]);
    const { c: pub } = await open(broker.port, 4, { clientId: uniqueId('pub') });
    pub.send(publish(topic, 'old-subscription', 1, 1));
    await pub.next('puback');
    pub.send(publish(`${topic}/marker`, 'marker', 0));
    await next.c.next('publish', 5000, (p) => (p as IPublishPacket).topic === `${topic}/marker`);
    expect(takePublishes(next.c)).toHaveLength(0);
    next.c.destroy();
    pub.destroy();
    for (const c of idle) c.destroy();
  });
});
