// Limits that protect the broker from its clients: each exceeded limit gets the spec's reason code and
// a counter, costs only the offending client, and never the broker.
import { readFileSync } from 'node:fs';
import type { IDisconnectPacket, IPubackPacket, IPublishPacket, ISubackPacket } from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, RawClient, uniqueId } from './helpers/clients.ts';
import { metricValue, scrape } from './helpers/metrics.ts';

let mid = 1;
async function raw(port: number, version: 4 | 5): Promise<RawClient> {
  const c = await RawClient.connect(port, version);
  const ack = await c.handshake({ clientId: uniqueId('lim') });
  expect((version === 5 ? ack.reasonCode : ack.returnCode) ?? 0).toBe(0);
  return c;
}
async function subscribe(c: RawClient, ...topics: string[]): Promise<number[]> {
  const messageId = mid++;
  c.send({ cmd: 'subscribe', messageId, subscriptions: topics.map((topic) => ({ topic, qos: 1 as const })) });
  return (await c.next<ISubackPacket>('suback', 5000, (p) => p.messageId === messageId)).granted as number[];
}
function mqttGenerate(p: Parameters<typeof mqttPacket.generate>[0], version: 4 | 5): Buffer {
  return mqttPacket.generate(p, { protocolVersion: version });
}

/** A client that keeps publishing and receiving on its own topic: proof the others are unaffected. */
async function canaryWorks(port: number): Promise<void> {
  const c = await connectClient(port);
  const topic = `canary/${uniqueId()}`;
  await c.subscribeAsync(topic, { qos: 1 });
  const got = new Promise<string>((resolve) => c.once('message', (_t, p) => resolve(p.toString())));
  await c.publishAsync(topic, 'alive', { qos: 1 });
  expect(await got).toBe('alive');
  await c.endAsync();
}

describe('topic, subscription and publish-rate limits', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({
      args: [
        '--limits.maxTopicLength', '32',
        '--limits.maxTopicLevels', '4',
        '--limits.maxSubscriptionsPerClient', '3',
        '--limits.publishRatePerSecond', '50',
        '--limits.publishBytesPerSecond', '20000',
      ],
    });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('a topic name too long or too deep: v5 PUBACK 0x90, v3.1.1 acked and dropped; counted', async () => {
    const c5 = await raw(broker.port, 5);
    const sub = await raw(broker.port, 4);
    expect(await subscribe(sub, 'lim/#')).toEqual([1]);
    const long = `lim/${'x'.repeat(40)}`;
    const deep = 'lim/a/b/c/d';
    for (const topic of [long, deep]) {
      const id = mid++;
      c5.send({ cmd: 'publish', topic, payload: Buffer.from('no'), qos: 1, messageId: id, retain: false, dup: false });
      expect((await c5.next<IPubackPacket>('puback', 5000, (p) => p.messageId === id)).reasonCode).toBe(0x90);
    }
    const c4 = await raw(broker.port, 4);
    const id = mid++;
    c4.send({ cmd: 'publish', topic: long, payload: Buffer.from('no'), qos: 1, messageId: id, retain: false, dup: false });
    await c4.next<IPubackPacket>('puback', 5000, (p) => p.messageId === id);
    // Within limits: delivered (and nothing before it was).
    const ok = mid++;
    c4.send({ cmd: 'publish', topic: 'lim/a/b/c', payload: Buffer.from('yes'), qos: 1, messageId: ok, retain: false, dup: false });
    await c4.next<IPubackPacket>('puback', 5000, (p) => p.messageId === ok);
    expect((await sub.next<IPublishPacket>('publish')).topic).toBe('lim/a/b/c');
    const text = await scrape(broker.metricsPort);
    expect(metricValue(text, 'starling_limit_exceeded_total', { limit: 'topic_length' })).toBeGreaterThanOrEqual(2);
    expect(metricValue(text, 'starling_limit_exceeded_total', { limit: 'topic_levels' })).toBeGreaterThanOrEqual(1);
    for (const c of [c5, c4, sub]) c.destroy();
  });

  it('a topic filter too long or too deep: SUBACK 0x8F (v5) / 0x80 (v3.1.1), the other filters granted', async () => {
    const c5 = await raw(broker.port, 5);
    expect(await subscribe(c5, `f/${'y'.repeat(40)}`, 'f/+/+/+/#', 'f/ok')).toEqual([0x8f, 0x8f, 1]);
    const c4 = await raw(broker.port, 4);
    expect(await subscribe(c4, `f/${'y'.repeat(40)}`, 'f/ok')).toEqual([0x80, 1]);
    c5.destroy();
    c4.destroy();
  });

  it('beyond limits.maxSubscriptionsPerClient the excess filter gets 0x97 Quota exceeded (v5) / 0x80; replacing one is fine', async () => {
    const c5 = await raw(broker.port, 5);
    expect(await subscribe(c5, 's/1', 's/2', 's/3', 's/4')).toEqual([1, 1, 1, 0x97]);
    expect(await subscribe(c5, 's/2')).toEqual([1]);
    expect(await subscribe(c5, 's/5')).toEqual([0x97]);
    const c4 = await raw(broker.port, 4);
    expect(await subscribe(c4, 's/1', 's/2', 's/3', 's/4')).toEqual([1, 1, 1, 0x80]);
    expect(metricValue(await scrape(broker.metricsPort), 'starling_limit_exceeded_total', { limit: 'subscriptions' })).toBe(3);
    c5.destroy();
    c4.destroy();
  });

  it('a v5 client publishing faster than limits.publishRatePerSecond gets DISCONNECT 0x96 and is closed; counted', async () => {
    const before = await scrape(broker.metricsPort);
    const flood = await raw(broker.port, 5);
    const one = mqttGenerate({ cmd: 'publish', topic: 'rate/x', payload: Buffer.from('p'), qos: 0, retain: false, dup: false }, 5);
    flood.write(Buffer.concat(Array.from({ length: 500 }, () => one)));
    const d = await flood.next<IDisconnectPacket>('disconnect', 10_000);
    expect(d.reasonCode).toBe(0x96);
    expect(await flood.closedWithin(5000)).toBe(true);
    const after = await scrape(broker.metricsPort);
    expect(metricValue(after, 'starling_disconnects_total', { reason: 'quota_exceeded' }) - metricValue(before, 'starling_disconnects_total', { reason: 'quota_exceeded' })).toBe(1);
    expect(metricValue(after, 'starling_limit_exceeded_total', { limit: 'publish_rate' })).toBeGreaterThanOrEqual(1);
    await canaryWorks(broker.port);
  });

  it('a v3.1.1 client over limits.publishBytesPerSecond is closed; counted', async () => {
    const flood = await raw(broker.port, 4);
    const big = mqttGenerate({ cmd: 'publish', topic: 'rate/bytes', payload: Buffer.alloc(10_000, 1), qos: 0, retain: false, dup: false }, 4);
    flood.write(Buffer.concat([big, big, big, big, big]));
    expect(await flood.closedWithin(10_000)).toBe(true);
    expect(flood.received.filter((p) => p.cmd === 'disconnect')).toHaveLength(0);
    expect(metricValue(await scrape(broker.metricsPort), 'starling_limit_exceeded_total', { limit: 'publish_bytes' })).toBeGreaterThanOrEqual(1);
    await canaryWorks(broker.port);
  });

  it('publishing within the rates is never refused', async () => {
    const c = await raw(broker.port, 5);
    for (let i = 0; i < 20; i++) {
      const id = mid++;
      c.send({ cmd: 'publish', topic: 'rate/ok', payload: Buffer.from('ok'), qos: 1, messageId: id, retain: false, dup: false });
      expect((await c.next<IPubackPacket>('puback', 5000, (p) => p.messageId === id)).reasonCode ?? 0).toBe(0);
    }
    c.destroy();
  });
});

describe('limits.maxConnections', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ args: ['--limits.maxConnections', '4'] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('a node at its connection limit refuses new sockets at accept (counted); connected clients keep working', async () => {
    const clients: MqttClient[] = [];
    for (let i = 0; i < 4; i++) clients.push(await connectClient(broker.port));
    const extra = await RawClient.connect(broker.port, 4);
    expect(await extra.closedWithin(5000)).toBe(true);
    expect(metricValue(await scrape(broker.metricsPort), 'starling_connections_refused_total', { reason: 'max_connections' })).toBeGreaterThanOrEqual(1);
    const topic = `maxconn/${uniqueId()}`;
    await clients[0]!.subscribeAsync(topic, { qos: 1 });
    const got = new Promise<string>((resolve) => clients[0]!.once('message', (_t, p) => resolve(p.toString())));
    await clients[1]!.publishAsync(topic, 'still here', { qos: 1 });
    expect(await got).toBe('still here');
    // One leaves: a new client gets in (the node learns of the end asynchronously; bounded retries).
    await clients.pop()!.endAsync();
    let admitted: MqttClient | null = null;
    for (let i = 0; i < 50 && !admitted; i++) admitted = await connectClient(broker.port).catch(() => null);
    expect(admitted).not.toBeNull();
    await admitted!.endAsync();
    await Promise.all(clients.map((c) => c.endAsync()));
  });
});

describe('limits.connectionRatePerAddress', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ args: ['--limits.connectionRatePerAddress', '5'] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('a burst of 30 connections from one address: beyond the rate they are refused at accept, counted', async () => {
    const results = await Promise.all(
      Array.from({ length: 30 }, async () => {
        const c = await RawClient.connect(broker.port, 4);
        c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: uniqueId('burst'), clean: true, keepalive: 60 });
        // A refused socket is closed, sometimes reset (ECONNRESET): both are a refusal.
        const outcome = await Promise.race([c.next('connack', 10_000).then(() => 'accepted', () => 'timeout'), c.closed.then(() => 'refused', () => 'refused')]);
        c.destroy();
        return outcome;
      }),
    );
    const refused = results.filter((r) => r === 'refused').length;
    expect(refused).toBeGreaterThan(0);
    expect(results.filter((r) => r === 'accepted').length).toBeGreaterThanOrEqual(5);
    expect(metricValue(await scrape(broker.metricsPort), 'starling_connections_refused_total', { reason: 'connection_rate' })).toBe(refused);
  });
});

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

describe('a subscriber that never reads', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ args: ['--limits.slowConsumerMs', '500', '--limits.maxQueued', '2000'] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('a flood at it (QoS 0 and 1) does not grow the broker without bound, drops are counted, the publisher keeps publishing', async () => {
    const baseline = rssBytes(broker.child.pid!);
    const stuck = await raw(broker.port, 4);
    expect(await subscribe(stuck, 'flood/#')).toEqual([1]);
    stuck.socket.pause(); // never reads again: the broker's writes back up

    const pub = await raw(broker.port, 4);
    const payload = Buffer.alloc(1024, 7);
    const qos0Batch = Buffer.concat(Array.from({ length: 100 }, () => mqttGenerate({ cmd: 'publish', topic: 'flood/0', payload, qos: 0, retain: false, dup: false }, 4)));
    const FLOOD_MS = 8000;
    const start = Date.now();
    const roundsBySecond: number[] = [];
    let peakRss = 0;
    // Bounded: at most 20,000 rounds and FLOOD_MS; each round is 100 QoS 0 + 1 QoS 1 (awaiting its PUBACK).
    for (let round = 0; round < 20_000 && Date.now() - start < FLOOD_MS; round++) {
      const id = (round % 65000) + 1;
      pub.write(qos0Batch);
      pub.write(mqttGenerate({ cmd: 'publish', topic: 'flood/1', payload, qos: 1, messageId: id, retain: false, dup: false }, 4));
      await pub.next<IPubackPacket>('puback', 20_000, (p) => p.messageId === id);
      const sec = Math.floor((Date.now() - start) / 1000);
      roundsBySecond[sec] = (roundsBySecond[sec] ?? 0) + 1;
      if (round % 50 === 0) peakRss = Math.max(peakRss, rssBytes(broker.child.pid!));
    }
    peakRss = Math.max(peakRss, rssBytes(broker.child.pid!));
    const text = await scrape(broker.metricsPort);
    const dropped = metricValue(text, 'starling_messages_dropped_total', { cause: 'slow_consumer' }) + metricValue(text, 'starling_messages_dropped_total', { cause: 'queue_full' });
    const totalRounds = roundsBySecond.reduce((a, b) => a + (b ?? 0), 0);
    // ~100 MB per round-second would mean everything was kept; the bound is generous, the growth is not.
    console.log(`slow consumer: baseline ${Math.round(baseline / 2 ** 20)} MiB, peak ${Math.round(peakRss / 2 ** 20)} MiB, rounds ${totalRounds} (${roundsBySecond.join(',')}), dropped ${dropped}`);
    expect(peakRss - baseline).toBeLessThan(400 * 2 ** 20);
    expect(dropped).toBeGreaterThan(0);
    // Not stalled for good: PUBACKs kept coming in the last seconds of the flood.
    const lastSeconds = roundsBySecond.slice(-3).reduce((a, b) => a + (b ?? 0), 0);
    expect(lastSeconds).toBeGreaterThan(0);
    expect(totalRounds * 100).toBeGreaterThan(2000);
    await canaryWorks(broker.port);
    stuck.destroy();
    pub.destroy();
  }, 60_000);
});
