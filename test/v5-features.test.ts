// MQTT 5 message features against a real 2-worker broker: topic aliases both ways, Message Expiry,
// forwarded properties, Maximum Packet Size both ways.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IClientOptions, MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, RawClient, uniqueId } from './helpers/clients.ts';
import { connectOffWorker } from './helpers/cross-worker.ts';
import { metricValue, scrape } from './helpers/metrics.ts';
import { connectedWorker } from './helpers/placement.ts';
import { onTopic, record } from './helpers/receive.ts';

const TOPIC_ALIAS_MAXIMUM = 10;
const MAX_PACKET_SIZE = 2048;

let broker: BrokerProcess;
const clients: MqttClient[] = [];
const raws: RawClient[] = [];

async function client(opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectClient(broker.port, { protocolVersion: 5, ...opts });
  clients.push(c);
  return c;
}

async function clientOffWorkerOf(otherClientId: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const { client: c } = await connectOffWorker(broker, await connectedWorker(broker, otherClientId), { protocolVersion: 5, ...opts });
  clients.push(c);
  return c;
}

async function raw(version: 4 | 5, connect: Partial<mqttPacket.IConnectPacket> = {}): Promise<{ r: RawClient; connack: mqttPacket.IConnackPacket; clientId: string }> {
  const r = await RawClient.connect(broker.port, version);
  raws.push(r);
  const clientId = connect.clientId ?? uniqueId('raw');
  const connack = await r.handshake({ ...connect, clientId });
  return { r, connack, clientId };
}

function subscribe(r: RawClient, topic: string, qos: 0 | 1 | 2 = 1, messageId = 1): Promise<mqttPacket.ISubackPacket> {
  r.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] } as mqttPacket.ISubscribePacket);
  return r.next<mqttPacket.ISubackPacket>('suback');
}

function publish(r: RawClient, topic: string, payload: string | Buffer, qos: 0 | 1 | 2, messageId: number, properties?: mqttPacket.IPublishPacket['properties']): void {
  r.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, messageId, retain: false, dup: false, ...(properties ? { properties } : {}) });
}

async function dropped(cause: string): Promise<number> {
  return metricValue(await scrape(broker.metricsPort), 'starling_messages_dropped_total', { cause });
}

beforeAll(async () => {
  broker = await startBroker({
    workers: 2,
    args: ['--limits.topicAliasMaximum', String(TOPIC_ALIAS_MAXIMUM), '--limits.maxPacketSize', String(MAX_PACKET_SIZE)],
  });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  for (const r of raws.splice(0)) r.destroy();
});
afterAll(async () => {
  await broker.stop();
});

describe('topic aliases from the client', () => {
  it('resolves a topic-less PUBLISH through the alias the client set, and follows a re-mapped alias [MQTT-3.3.2-12]', async () => {
    const t = uniqueId('alias-in');
    const { r, connack, clientId } = await raw(5);
    expect(connack.properties?.topicAliasMaximum).toBe(TOPIC_ALIAS_MAXIMUM);
    const sub = await clientOffWorkerOf(clientId);
    const rec = record(sub);
    await sub.subscribeAsync(`${t}/#`, { qos: 1 });

    publish(r, `${t}/a`, 'one', 1, 1, { topicAlias: TOPIC_ALIAS_MAXIMUM });
    publish(r, '', 'two', 1, 2, { topicAlias: TOPIC_ALIAS_MAXIMUM });
    publish(r, `${t}/b`, 'three', 1, 3, { topicAlias: TOPIC_ALIAS_MAXIMUM });
    publish(r, '', 'four', 1, 4, { topicAlias: TOPIC_ALIAS_MAXIMUM });
    publish(r, `${t}/fence`, 'fence', 1, 5);
    for (let id = 1; id <= 5; id++) expect((await r.next<mqttPacket.IPubackPacket>('puback')).reasonCode ?? 0).toBe(0);
    const got = await rec.until(onTopic(`${t}/fence`));
    expect(got.map((m) => [m.topic, m.payload.toString()])).toEqual([
      [`${t}/a`, 'one'],
      [`${t}/a`, 'two'],
      [`${t}/b`, 'three'],
      [`${t}/b`, 'four'],
    ]);
    // The publisher's alias is its own: it is not forwarded to subscribers.
    for (const m of got) expect(m.packet.properties?.topicAlias).toBeUndefined();
  });

  for (const [alias, id] of [
    [0, '[MQTT-3.3.2-8]'],
    [TOPIC_ALIAS_MAXIMUM + 1, '[MQTT-3.3.2-9]'],
  ] as const) {
    it(`closes with DISCONNECT 0x94 on Topic Alias ${alias} (0 or above the broker's Topic Alias Maximum) ${id}`, async () => {
      const { r } = await raw(5);
      publish(r, `${uniqueId('alias-bad')}/x`, 'x', 0, 0, { topicAlias: alias });
      const d = await r.next<mqttPacket.IDisconnectPacket>('disconnect');
      expect(d.reasonCode).toBe(0x94);
      expect(await r.closedWithin(5000)).toBe(true);
    });
  }

  it('closes with DISCONNECT 0x82 on a topic-less PUBLISH whose alias was never set', async () => {
    const { r } = await raw(5);
    publish(r, '', 'x', 1, 1, { topicAlias: 2 });
    const d = await r.next<mqttPacket.IDisconnectPacket>('disconnect');
    expect(d.reasonCode).toBe(0x82);
    expect(await r.closedWithin(5000)).toBe(true);
  });
});

describe('topic aliases to the client', () => {
  it('assigns aliases up to the Topic Alias Maximum the client announced: a repeated topic arrives as empty topic + alias [MQTT-3.3.2-10], [MQTT-3.3.2-11]', async () => {
    const t = uniqueId('alias-out');
    const max = 2;
    const { r, clientId } = await raw(5, { properties: { topicAliasMaximum: max } });
    await subscribe(r, `${t}/#`, 1);
    const pub = await clientOffWorkerOf(clientId);
    const sent = ['a', 'a', 'b', 'c', 'a', 'c', 'b'].map((s) => `${t}/${s}`);
    for (const [i, topic] of sent.entries()) await pub.publishAsync(topic, `m${i}`, { qos: 1 });

    const aliases = new Map<number, string>();
    const resolved: string[] = [];
    const wire: Array<[string, number | undefined]> = [];
    for (let i = 0; i < sent.length; i++) {
      const p = await r.next<mqttPacket.IPublishPacket>('publish');
      r.send({ cmd: 'puback', messageId: p.messageId, reasonCode: 0 });
      expect(p.payload.toString()).toBe(`m${i}`);
      const alias = p.properties?.topicAlias;
      wire.push([p.topic, alias]);
      if (alias !== undefined) {
        expect(alias).toBeGreaterThan(0);
        expect(alias).toBeLessThanOrEqual(max);
        if (p.topic === '') {
          expect(aliases.has(alias), `alias ${alias} used before it was set`).toBe(true);
        } else aliases.set(alias, p.topic);
      }
      resolved.push(p.topic === '' ? aliases.get(alias!)! : p.topic);
    }
    expect(resolved).toEqual(sent);
    // The second message on a topic with an alias leaves the topic out.
    expect(wire[1]).toEqual(['', wire[0]![1]]);
    expect(wire[0]![1]).toBeDefined();
  });

  it('sends no alias to a client that announced no Topic Alias Maximum, and the mqtt client resolves the aliases it is sent', async () => {
    const t = uniqueId('alias-lib');
    const none = await client();
    const withAliases = await client({ properties: { topicAliasMaximum: 5 } });
    const [recNone, recAliases] = [record(none), record(withAliases)];
    await none.subscribeAsync(`${t}/#`, { qos: 1 });
    await withAliases.subscribeAsync(`${t}/#`, { qos: 1 });
    const pub = await client();
    for (let i = 0; i < 3; i++) await pub.publishAsync(`${t}/x`, `m${i}`, { qos: 1 });
    await pub.publishAsync(`${t}/fence`, 'fence', { qos: 1 });
    const gotNone = await recNone.until(onTopic(`${t}/fence`));
    const gotAliases = await recAliases.until(onTopic(`${t}/fence`));
    expect(gotNone.map((m) => [m.topic, m.packet.properties?.topicAlias])).toEqual([0, 1, 2].map(() => [`${t}/x`, undefined]));
    expect(gotAliases.map((m) => [m.topic, m.payload.toString()])).toEqual([0, 1, 2].map((i) => [`${t}/x`, `m${i}`]));
  });
});

describe('Message Expiry Interval', () => {
  it('forwards the interval to a subscriber served at once, and none when the publisher set none [MQTT-3.3.2-6]', async () => {
    const t = uniqueId('exp-now');
    const sub = await client();
    const rec = record(sub);
    await sub.subscribeAsync(`${t}/#`, { qos: 1 });
    const pub = await clientOffWorkerOf(sub.options.clientId!);
    await pub.publishAsync(`${t}/x`, 'expiring', { qos: 1, properties: { messageExpiryInterval: 100 } });
    await pub.publishAsync(`${t}/x`, 'forever', { qos: 1 });
    await pub.publishAsync(`${t}/fence`, 'fence', { qos: 1 });
    const got = await rec.until(onTopic(`${t}/fence`));
    const [expiring, forever] = got.map((m) => m.packet.properties?.messageExpiryInterval);
    expect(expiring).toBeLessThanOrEqual(100);
    expect(expiring).toBeGreaterThanOrEqual(90);
    expect(forever).toBeUndefined();
  });

  it('drops a message that expired while queued behind a full window, and reduces the interval of one that waited [MQTT-3.3.2-5], [MQTT-3.3.2-6]', async () => {
    const t = uniqueId('exp-window');
    // Receive Maximum 1: the first message stays unacknowledged, the others queue in the broker.
    const { r, clientId } = await raw(5, { properties: { receiveMaximum: 1 } });
    await subscribe(r, `${t}/#`, 1);
    const pub = await clientOffWorkerOf(clientId);
    const expiredBefore = await dropped('expired');
    await pub.publishAsync(`${t}/x`, 'm1', { qos: 1 });
    const first = await r.next<mqttPacket.IPublishPacket>('publish');
    expect(first.payload.toString()).toBe('m1');
    await pub.publishAsync(`${t}/x`, 'short', { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync(`${t}/x`, 'long', { qos: 1, properties: { messageExpiryInterval: 100 } });
    const queuedAt = Date.now();
    // Waiting is the point: 'short' (1 s) must expire in the queue; 'long' must age by a second or more.
    await new Promise((res) => setTimeout(res, Math.max(0, queuedAt + 1500 - Date.now())));
    r.send({ cmd: 'puback', messageId: first.messageId, reasonCode: 0 });
    const next = await r.next<mqttPacket.IPublishPacket>('publish');
    expect(next.payload.toString()).toBe('long');
    expect(next.properties?.messageExpiryInterval).toBeLessThan(100);
    expect(next.properties?.messageExpiryInterval).toBeGreaterThanOrEqual(90);
    r.send({ cmd: 'puback', messageId: next.messageId, reasonCode: 0 });
    expect(await dropped('expired')).toBe(expiredBefore + 1);
  });

  it('does not deliver a message that expired while its persistent session was offline [MQTT-3.3.2-5]', async () => {
    const t = uniqueId('exp-offline');
    const clientId = uniqueId('offline');
    const first = await raw(5, { clientId, clean: true, properties: { sessionExpiryInterval: 300 } });
    await subscribe(first.r, `${t}/#`, 1);
    first.r.send({ cmd: 'disconnect', reasonCode: 0 });
    expect(await first.r.closedWithin(5000)).toBe(true);
    await broker.waitForLog((l) => l.msg === 'connection closed' && l.clientId === clientId);

    const pub = await client();
    await pub.publishAsync(`${t}/x`, 'short', { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync(`${t}/x`, 'long', { qos: 1, properties: { messageExpiryInterval: 100 } });
    const queuedAt = Date.now();
    await new Promise((res) => setTimeout(res, Math.max(0, queuedAt + 1500 - Date.now())));

    const again = await raw(5, { clientId, clean: false, properties: { sessionExpiryInterval: 300 } });
    expect(again.connack.sessionPresent).toBe(true);
    const p = await again.r.next<mqttPacket.IPublishPacket>('publish');
    expect(p.payload.toString()).toBe('long');
    expect(p.properties?.messageExpiryInterval).toBeLessThan(100);
    again.r.send({ cmd: 'puback', messageId: p.messageId, reasonCode: 0 });
    await pub.publishAsync(`${t}/fence`, 'fence', { qos: 1 });
    const fence = await again.r.next<mqttPacket.IPublishPacket>('publish');
    expect(fence.topic).toBe(`${t}/fence`);
    again.r.send({ cmd: 'puback', messageId: fence.messageId, reasonCode: 0 });
    again.r.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
  });
});

describe('forwarded properties', () => {
  it('passes User Properties, Response Topic, Correlation Data, Payload Format Indicator and Content Type through unchanged, across workers [MQTT-3.3.2-4], [MQTT-3.3.2-15..20]', async () => {
    const t = uniqueId('props');
    const pub = await client();
    const sameWorker = await client();
    const otherWorker = await clientOffWorkerOf(pub.options.clientId!);
    const v3 = await client({ protocolVersion: 4 });
    const subs = [sameWorker, otherWorker, v3];
    const recs = subs.map(record);
    for (const s of subs) await s.subscribeAsync(`${t}/x`, { qos: 1 });

    const properties = {
      payloadFormatIndicator: true,
      contentType: 'text/plain; charset=utf-8',
      responseTopic: `${t}/reply/ünïcode`,
      correlationData: Buffer.from([0x00, 0x01, 0x80, 0xff, 0x00]),
      userProperties: { first: '1', repeated: ['a', 'b', 'a'], last: 'zz' },
    };
    await pub.publishAsync(`${t}/x`, 'héllo', { qos: 1, properties });
    for (const [i, rec] of recs.entries()) {
      const m = await rec.next();
      expect(m.payload.toString()).toBe('héllo');
      if (subs[i] === v3) continue;
      const p = m.packet.properties!;
      expect({
        payloadFormatIndicator: p.payloadFormatIndicator,
        contentType: p.contentType,
        responseTopic: p.responseTopic,
        correlationData: Buffer.from(p.correlationData!),
        userProperties: p.userProperties,
      }).toEqual(properties);
      // User property order is kept, repeated names included [MQTT-3.3.2-18].
      expect(Object.keys(p.userProperties!)).toEqual(['first', 'repeated', 'last']);
    }
  });
});

describe('Maximum Packet Size', () => {
  it('announces the broker maximum and closes with DISCONNECT 0x95 on a larger PUBLISH (v5), closes the socket (v3.1.1)', async () => {
    const t = uniqueId('too-big');
    const v5 = await raw(5);
    expect(v5.connack.properties?.maximumPacketSize).toBe(MAX_PACKET_SIZE);
    publish(v5.r, `${t}/x`, Buffer.alloc(MAX_PACKET_SIZE + 100, 1), 1, 1);
    const d = await v5.r.next<mqttPacket.IDisconnectPacket>('disconnect');
    expect(d.reasonCode).toBe(0x95);
    expect(await v5.r.closedWithin(5000)).toBe(true);

    const v3 = await raw(4);
    publish(v3.r, `${t}/x`, Buffer.alloc(MAX_PACKET_SIZE + 100, 1), 1, 1);
    expect(await v3.r.closedWithin(5000)).toBe(true);
    expect(v3.r.received.filter((p) => p.cmd === 'puback')).toEqual([]);
    await broker.waitForLog((l) => l.msg === 'connection closed' && l.clientId === v3.clientId && l.reason === 'packet_too_large');
  });

  it('counts the whole packet against the maximum: exactly Maximum Packet Size bytes is accepted, one byte more is refused with 0x95', async () => {
    const t = uniqueId('boundary');
    /** A QoS 1 PUBLISH whose encoding (fixed header included) is exactly `size` bytes. */
    const sized = (size: number, messageId: number): Buffer => {
      const make = (n: number) =>
        mqttPacket.generate({ cmd: 'publish', topic: `${t}/x`, payload: Buffer.alloc(n, 0x62), qos: 1, messageId, retain: false, dup: false }, { protocolVersion: 5 });
      let n = size;
      for (let i = 0; i < 8 && make(n).length !== size; i++) n -= make(n).length - size;
      const buf = make(n);
      expect(buf.length).toBe(size);
      return buf;
    };
    const { r } = await raw(5);
    r.write(sized(MAX_PACKET_SIZE, 1));
    expect((await r.next<mqttPacket.IPubackPacket>('puback')).messageId).toBe(1);
    r.write(sized(MAX_PACKET_SIZE + 1, 2));
    const d = await r.next<mqttPacket.IDisconnectPacket>('disconnect');
    expect(d.reasonCode).toBe(0x95);
    expect(await r.closedWithin(5000)).toBe(true);
  });

  it('does not send a message larger than the Maximum Packet Size a client announced; other subscribers get it; counted as too_large [MQTT-3.1.2-24], [MQTT-3.1.2-25]', async () => {
    const t = uniqueId('client-max');
    const small = await client({ properties: { maximumPacketSize: 512 } });
    const big = await client();
    const [recSmall, recBig] = [record(small), record(big)];
    await small.subscribeAsync(`${t}/#`, { qos: 1 });
    await big.subscribeAsync(`${t}/#`, { qos: 1 });
    const pub = await clientOffWorkerOf(small.options.clientId!);
    const before = await dropped('too_large');

    const payload = Buffer.alloc(1000, 0x61);
    await pub.publishAsync(`${t}/x`, payload, { qos: 0 });
    await pub.publishAsync(`${t}/x`, payload, { qos: 1 });
    await pub.publishAsync(`${t}/x`, 'fits', { qos: 1 });
    await pub.publishAsync(`${t}/fence`, 'fence', { qos: 1 });
    expect((await recSmall.until(onTopic(`${t}/fence`))).map((m) => m.payload.toString())).toEqual(['fits']);
    expect((await recBig.until(onTopic(`${t}/fence`))).map((m) => m.payload.length)).toEqual([1000, 1000, 4]);
    expect(small.connected).toBe(true);
    expect(await dropped('too_large')).toBe(before + 2);
  });

  it('does not leave a topic alias unset at the client when the message that would have set it was too large', async () => {
    const t = uniqueId('alias-drop');
    const { r, clientId } = await raw(5, { properties: { topicAliasMaximum: 5, maximumPacketSize: 512 } });
    await subscribe(r, `${t}/#`, 1);
    const pub = await clientOffWorkerOf(clientId);
    await pub.publishAsync(`${t}/x`, Buffer.alloc(1000, 0x61), { qos: 1 });
    await pub.publishAsync(`${t}/x`, 'fits', { qos: 1 });
    const p = await r.next<mqttPacket.IPublishPacket>('publish');
    expect(p.payload.toString()).toBe('fits');
    // The dropped message never reached the client, so this one must carry the topic name.
    expect(p.topic).toBe(`${t}/x`);
    r.send({ cmd: 'puback', messageId: p.messageId, reasonCode: 0 });
  });
});
