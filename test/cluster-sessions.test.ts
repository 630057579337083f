// Sessions cluster-wide: a client id connecting on another node takes the session over (the old
// connection gets DISCONNECT 0x8E), and a persistent session — subscriptions, offline queue, in-flight
// messages both ways — resumes on whichever node the client comes back to: nothing lost, nothing twice.
import type { IConnackPacket, IDisconnectPacket, IPublishPacket } from 'mqtt-packet';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerProcess } from './helpers/broker.ts';
import { Store, type MqttClient } from 'mqtt';
import { RawClient, uniqueId } from './helpers/clients.ts';
import { endClients, fatalLines, keepLogsOnFailure, metric, nodeClient, RedisServer, startCluster, waitForMetric, type Cluster } from './helpers/cluster.ts';

type Version = 4 | 5;

let redis: RedisServer;
let cluster: Cluster;
const raws: RawClient[] = [];

keepLogsOnFailure(() => cluster?.all ?? []);
beforeAll(async () => {
  redis = await RedisServer.start();
  cluster = await startCluster(redis, ['A', 'B', 'C']);
}, 60_000);
afterEach(() => {
  for (const r of raws.splice(0)) r.destroy();
});
afterAll(async () => {
  await cluster?.stop();
  for (const n of cluster?.nodes.values() ?? []) expect(fatalLines(n)).toEqual([]);
  await redis?.kill();
}, 30_000);

function publish(topic: string, payload: string, qos: 0 | 1 | 2, messageId?: number): IPublishPacket {
  return { cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, ...(qos > 0 ? { messageId } : {}) } as IPublishPacket;
}

function persistent(version: Version, clientId: string, extra: Record<string, number> = {}): Parameters<RawClient['handshake']>[0] {
  return version === 4 ? { clientId, clean: false } : { clientId, clean: false, properties: { sessionExpiryInterval: 300, ...extra } };
}

async function open(node: string, version: Version, fields: Parameters<RawClient['handshake']>[0]): Promise<{ c: RawClient; ack: IConnackPacket }> {
  const c = await RawClient.connect(cluster.node(node).port, version);
  c.socket.setNoDelay(true);
  raws.push(c);
  const ack = await c.handshake(fields);
  expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(0);
  return { c, ack };
}

async function subscribe(c: RawClient, subscriptions: Array<{ topic: string; qos: 0 | 1 | 2 }>, messageId = 1): Promise<void> {
  c.send({ cmd: 'subscribe', messageId, subscriptions });
  await c.next('suback', 5000, (p) => p.messageId === messageId);
}

async function disconnect(c: RawClient): Promise<void> {
  c.send(c.version === 5 ? { cmd: 'disconnect', reasonCode: 0 } : { cmd: 'disconnect' });
  expect(await c.closedWithin(5000)).toBe(true);
}

/** Publishes QoS 1/2 messages and completes each flow before the next. */
async function publishAll(pub: RawClient, topic: string, items: Array<[string, 1 | 2]>, firstId = 1): Promise<void> {
  for (const [i, [payload, qos]] of items.entries()) {
    const id = firstId + i;
    pub.send(publish(topic, payload, qos, id));
    await pub.next(qos === 1 ? 'puback' : 'pubrec', 5000, (p) => p.messageId === id);
    if (qos === 2) {
      pub.send({ cmd: 'pubrel', messageId: id });
      await pub.next('pubcomp', 5000, (p) => p.messageId === id);
    }
  }
}

/** Receives `n` PUBLISHes, acknowledging each (PUBACK, or PUBREC → PUBREL → PUBCOMP), in order. */
async function receiveAll(c: RawClient, n: number): Promise<IPublishPacket[]> {
  const out: IPublishPacket[] = [];
  for (let i = 0; i < n; i++) {
    const p = await c.next<IPublishPacket>('publish', 10_000);
    out.push(p);
    if (p.qos === 1) c.send({ cmd: 'puback', messageId: p.messageId });
    if (p.qos === 2) {
      c.send({ cmd: 'pubrec', messageId: p.messageId });
      await c.next('pubrel', 5000, (r) => r.messageId === p.messageId);
      c.send({ cmd: 'pubcomp', messageId: p.messageId });
    }
  }
  return out;
}

/** A QoS 0 marker through the same path; everything sent to c before it has arrived once it does. */
async function fence(c: RawClient, pub: RawClient, topic: string): Promise<void> {
  pub.send(publish(topic, 'fence', 0));
  await c.next('publish', 10_000, (p) => (p as IPublishPacket).topic === topic);
}

function publishes(c: RawClient): IPublishPacket[] {
  return c.received.filter((p): p is IPublishPacket => p.cmd === 'publish');
}

async function queuedOn(node: BrokerProcess): Promise<number> {
  return metric(node, 'starling_queued_messages');
}

describe('cluster sessions (3 nodes)', () => {
  for (const version of [5, 4] as const) {
    it(`v${version === 5 ? '5' : '3.1.1'}: the same client id connecting on B takes over the session held on A${version === 5 ? ': DISCONNECT 0x8E' : ''} [MQTT-3.1.4-3]`, async () => {
      const clientId = uniqueId('take');
      const topic = `cl/take/${clientId}`;
      const old = await open('A', version, persistent(version, clientId));
      await subscribe(old.c, [{ topic, qos: 1 }]);
      const next = await open('B', version, persistent(version, clientId));
      if (version === 5) expect((await old.c.next<IDisconnectPacket>('disconnect')).reasonCode).toBe(0x8e);
      expect(await old.c.closedWithin(5000)).toBe(true);
      if (version === 4) expect(old.c.received.some((p) => p.cmd === 'disconnect')).toBe(false);
      expect(next.ack.sessionPresent).toBe(true);
      await cluster.node('A').waitForLog((l) => l.msg === 'connection closed' && l.clientId === clientId && l.reason === 'session_taken_over');

      // The subscription lives on B now; A is no longer sent the topic.
      const inA = await metric(cluster.node('A'), 'starling_cluster_messages_in_total');
      const { c: pub } = await open('C', 4, { clientId: uniqueId('pub') });
      await publishAll(pub, topic, [['after', 1]]);
      const [got] = await receiveAll(next.c, 1);
      expect(got!.payload.toString()).toBe('after');
      expect(await metric(cluster.node('A'), 'starling_cluster_messages_in_total')).toBe(inA);
      await disconnect(next.c);
    });
  }

  it('an offline persistent session queued on A resumes on B: every queued QoS 1 and 2 message once, in order, and the subscriptions with it', async () => {
    const clientId = uniqueId('offline');
    const topic = `cl/offline/${clientId}`;
    const first = await open('A', 5, persistent(5, clientId));
    await subscribe(first.c, [
      { topic, qos: 2 },
      { topic: `${topic}/fence`, qos: 0 },
    ]);
    await disconnect(first.c);
    const before = await queuedOn(cluster.node('A'));
    const { c: pub } = await open('C', 4, { clientId: uniqueId('pub') });
    const items: Array<[string, 1 | 2]> = Array.from({ length: 40 }, (_, i) => [`q${i}`, i % 2 === 0 ? 1 : 2]);
    await publishAll(pub, topic, items);
    await waitForMetric(cluster.node('A'), 'starling_queued_messages', (v) => v >= before + items.length);

    const back = await open('B', 5, persistent(5, clientId));
    expect(back.ack.sessionPresent).toBe(true);
    const got = await receiveAll(back.c, items.length);
    expect(got.map((p) => [p.payload.toString(), p.qos])).toEqual(items);
    // Subscriptions moved: live messages follow, and nothing arrives twice.
    await publishAll(pub, topic, [['live', 2]], 100);
    expect((await receiveAll(back.c, 1))[0]!.payload.toString()).toBe('live');
    await fence(back.c, pub, `${topic}/fence`);
    expect(publishes(back.c)).toEqual([]);
    expect(await queuedOn(cluster.node('A'))).toBe(before);
    await disconnect(back.c);
  });

  for (const how of ['offline', 'connected'] as const) {
    it(`unacknowledged in-flight messages of a session ${how} on A are resent on C with DUP and their ids, PUBREL too; QoS 2 exactly once [MQTT-4.4.0-1]`, async () => {
      const clientId = uniqueId(`inflight-${how}`);
      const topic = `cl/inflight/${clientId}`;
      const first = await open('A', 5, persistent(5, clientId, { receiveMaximum: 3 }));
      await subscribe(first.c, [
        { topic, qos: 2 },
        { topic: `${topic}/fence`, qos: 0 },
      ]);
      const { c: pub } = await open('B', 4, { clientId: uniqueId('pub') });
      // 3 in flight (window 3), 2 queued behind them.
      await publishAll(pub, topic, [['a', 2], ['b', 1], ['c', 2], ['d', 2], ['e', 1]]);
      await fence(first.c, pub, `${topic}/fence`);
      const sent = publishes(first.c);
      expect(sent.map((p) => p.payload.toString())).toEqual(['a', 'b', 'c']);
      first.c.received.length = 0;
      // 'a' is acknowledged half-way (PUBREC: the broker owes PUBREL), 'b' and 'c' not at all.
      first.c.send({ cmd: 'pubrec', messageId: sent[0]!.messageId });
      await first.c.next('pubrel', 5000, (p) => p.messageId === sent[0]!.messageId);
      if (how === 'offline') first.c.destroy();

      const back = await open('C', 5, persistent(5, clientId));
      if (how === 'connected') expect((await first.c.next<IDisconnectPacket>('disconnect')).reasonCode).toBe(0x8e);
      expect(back.ack.sessionPresent).toBe(true);
      const rel = await back.c.next('pubrel', 5000);
      expect(rel.messageId).toBe(sent[0]!.messageId);
      back.c.send({ cmd: 'pubcomp', messageId: rel.messageId });
      const again = [await back.c.next<IPublishPacket>('publish'), await back.c.next<IPublishPacket>('publish')];
      expect(again.map((p) => [p.payload.toString(), p.dup, p.messageId])).toEqual([
        ['b', true, sent[1]!.messageId],
        ['c', true, sent[2]!.messageId],
      ]);
      back.c.send({ cmd: 'puback', messageId: again[0]!.messageId });
      back.c.send({ cmd: 'pubrec', messageId: again[1]!.messageId });
      await back.c.next('pubrel', 5000, (p) => p.messageId === again[1]!.messageId);
      back.c.send({ cmd: 'pubcomp', messageId: again[1]!.messageId });
      const queued = await receiveAll(back.c, 2);
      expect(queued.map((p) => [p.payload.toString(), p.dup])).toEqual([
        ['d', false],
        ['e', false],
      ]);
      await fence(back.c, pub, `${topic}/fence`);
      expect(publishes(back.c)).toEqual([]);
      await disconnect(back.c);
    });
  }

  it('inbound QoS 2 state moves across nodes: a PUBLISH resent (DUP) on B after PUBREC on A is not delivered twice; PUBREL completes it [MQTT-4.3.3-10]', async () => {
    const clientId = uniqueId('qos2-in');
    const topic = `cl/qos2-in/${clientId}`;
    const { c: sub } = await open('C', 4, { clientId: uniqueId('sub') });
    await subscribe(sub, [{ topic, qos: 2 }]);
    const first = await open('A', 4, { clientId, clean: false });
    first.c.send(publish(topic, 'once', 2, 9));
    await first.c.next('pubrec', 5000, (p) => p.messageId === 9);
    expect((await receiveAll(sub, 1))[0]!.payload.toString()).toBe('once');
    first.c.destroy(); // the PUBREL was never sent

    const back = await open('B', 4, { clientId, clean: false });
    expect(back.ack.sessionPresent).toBe(true);
    back.c.send({ ...publish(topic, 'once', 2, 9), dup: true });
    await back.c.next('pubrec', 5000, (p) => p.messageId === 9);
    back.c.send({ cmd: 'pubrel', messageId: 9 });
    await back.c.next('pubcomp', 5000, (p) => p.messageId === 9);
    back.c.send(publish(topic, 'marker', 2, 10));
    await back.c.next('pubrec', 5000, (p) => p.messageId === 10);
    back.c.send({ cmd: 'pubrel', messageId: 10 });
    expect((await receiveAll(sub, 1))[0]!.payload.toString()).toBe('marker');
    expect(publishes(sub)).toEqual([]);
    const clean = await open('B', 4, { clientId, clean: true });
    await disconnect(clean.c);
  });

  it('Clean Start on B discards the session held on A: Session Present 0, old subscriptions gone everywhere', async () => {
    const clientId = uniqueId('clean');
    const topic = `cl/clean/${clientId}`;
    const first = await open('A', 5, persistent(5, clientId));
    await subscribe(first.c, [{ topic, qos: 1 }]);
    await disconnect(first.c);
    const next = await open('B', 5, { clientId, clean: true, properties: { sessionExpiryInterval: 300 } });
    expect(next.ack.sessionPresent).toBe(false);
    await subscribe(next.c, [{ topic: `${topic}/fence`, qos: 0 }]);
    const inA = await metric(cluster.node('A'), 'starling_cluster_messages_in_total');
    const { c: pub } = await open('C', 4, { clientId: uniqueId('pub') });
    await publishAll(pub, topic, [['old-subscription', 1]]);
    await fence(next.c, pub, `${topic}/fence`);
    expect(publishes(next.c)).toEqual([]);
    expect(await metric(cluster.node('A'), 'starling_cluster_messages_in_total')).toBe(inA);
    await disconnect(next.c);
    // The discarded session does not come back: a later resume finds what the clean one left (no subscriptions).
    const again = await open('C', 5, persistent(5, clientId));
    expect(again.ack.sessionPresent).toBe(true);
    await publishAll(pub, topic, [['still-old', 1]], 10);
    await subscribe(again.c, [{ topic: `${topic}/fence`, qos: 0 }]);
    await fence(again.c, pub, `${topic}/fence`);
    expect(publishes(again.c)).toEqual([]);
    await disconnect(again.c);
  });

  it('a session hopping A → B → C → A → B with messages queued between hops gets each message exactly once, in order', async () => {
    const clientId = uniqueId('hop');
    const topic = `cl/hop/${clientId}`;
    const first = await open('A', 5, persistent(5, clientId));
    await subscribe(first.c, [{ topic, qos: 2 }]);
    await disconnect(first.c);
    const { c: pub } = await open('C', 4, { clientId: uniqueId('pub') });
    const all: string[] = [];
    let id = 1;
    for (const node of ['B', 'C', 'A', 'B']) {
      const batch: Array<[string, 2]> = Array.from({ length: 10 }, (_, i) => [`${node}-${all.length + i}`, 2]);
      await publishAll(pub, topic, batch, id);
      id += batch.length;
      const back = await open(node, 5, persistent(5, clientId));
      expect(back.ack.sessionPresent).toBe(true);
      const got = await receiveAll(back.c, batch.length);
      expect(got.map((p) => p.payload.toString())).toEqual(batch.map(([p]) => p));
      all.push(...batch.map(([p]) => p));
      await disconnect(back.c);
    }
    expect(all).toHaveLength(40);
  });

  it('while two publishers (on B and C, QoS 1 and 2) keep publishing, a subscriber hopping across nodes 8 times gets every message exactly once, in order', async () => {
    const clientId = uniqueId('hopper');
    const topic = `cl/hop-live/${clientId}`;
    // The client's own QoS 2 state survives its reconnects (as a client with a persistent store's would);
    // ending one connection must not close it for the next.
    const incomingStore = new (class extends Store {
      override close(cb?: () => void): this {
        cb?.();
        return this;
      }
    })();
    const got: string[] = [];
    /** Which connection (0: the first) each message arrived on, for a failure's diagnosis. */
    const via = new Map<string, string>();
    let onMessage: () => void = () => undefined;
    const session = { clientId, clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 300 }, incomingStore };
    let connections = 0;
    // Listening before the connection reads anything: a resumed session's messages can come with CONNACK.
    const attach = (c: MqttClient): void => {
      const n = connections++;
      c.on('message', (t, payload, packet) => {
        if (t !== topic) return;
        // QoS 1 is at least once: a message in flight when the connection was taken over comes again,
        // marked DUP. Anything else arriving twice is a failure.
        if (packet.qos === 1 && packet.dup && got.includes(payload.toString())) return;
        got.push(payload.toString());
        via.set(payload.toString(), `${n}${packet.dup ? 'd' : ''}`);
        onMessage();
      });
    };
    /** Resolves once `n` more messages than now arrived. */
    const more = (n: number) => {
      const target = got.length + n;
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`have ${got.length} of ${target} messages`)), 15_000);
        onMessage = () => {
          if (got.length < target) return;
          clearTimeout(timer);
          onMessage = () => undefined;
          resolve();
        };
      });
    };
    let sub = await nodeClient(cluster.node('A'), session, attach);
    await sub.subscribeAsync(topic, { qos: 2 });
    const pubs = [await nodeClient(cluster.node('B'), { protocolVersion: 5 }), await nodeClient(cluster.node('C'), { protocolVersion: 4 })];
    let stop = false;
    const sent = [0, 0];
    const publishing = pubs.map(async (p, k) => {
      for (let i = 0; !stop && i < 20_000; i++) {
        await p.publishAsync(topic, `${k}:${i}`, { qos: k === 0 ? 2 : 1 });
        sent[k] = i + 1;
      }
    });
    const hops = ['B', 'C', 'A', 'C', 'B', 'A', 'B', 'C'];
    for (const node of hops) {
      await more(20);
      const next = await nodeClient(cluster.node(node), session, attach);
      await sub.endAsync(true).catch(() => undefined);
      sub = next;
    }
    await more(20);
    stop = true;
    await Promise.all(publishing);
    const total = sent[0]! + sent[1]!;
    // (On a shortfall, the comparison below names what is missing.)
    if (got.length < total) await more(total - got.length).catch(() => undefined);
    for (let k = 0; k < 2; k++) {
      const mine = got.filter((g) => g.startsWith(`${k}:`));
      if (mine.length !== sent[k]) console.error(`publisher ${k}: arrived on connections`, mine.map((m) => `${m}@${via.get(m)}`).join(' '));
      expect(mine).toEqual(Array.from({ length: sent[k]! }, (_, i) => `${k}:${i}`));
    }
    expect(got).toHaveLength(total);
    const handoverWarnings = [...cluster.nodes.values()].flatMap((n) => n.logs.filter((l) => /handover/.test(l.msg)));
    expect(handoverWarnings).toEqual([]);
    await endClients([sub, ...pubs]);
  }, 90_000);
});
