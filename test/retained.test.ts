// Retained messages against a real 2-worker broker: store, replace, delete, RETAIN flag on delivery,
// v5 properties and Message Expiry kept with them, and served across workers.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IClientOptions, MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, uniqueId } from './helpers/clients.ts';
import { connectOffWorker, workerOfClient } from './helpers/cross-worker.ts';
import { onTopic, record } from './helpers/receive.ts';

let broker: BrokerProcess;
const clients: MqttClient[] = [];

async function client(opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectClient(broker.port, opts);
  clients.push(c);
  return c;
}

async function clientOffWorkerOf(other: MqttClient, opts: IClientOptions = {}): Promise<{ client: MqttClient; worker: number }> {
  const placed = await connectOffWorker(broker, await workerOfClient(broker, other), opts);
  clients.push(placed.client);
  return placed;
}

/**
 * Subscribes and returns the retained messages the subscription was sent. A retained fence topic is
 * subscribed right after: retained lookups are answered in request order, so the fence arriving means
 * everything the first subscription was going to be sent has been (at QoS 2, as QoS 2 messages surface on PUBREL).
 */
async function retainedOnSubscribe(c: MqttClient, filter: string, fence: string, qos: 0 | 1 | 2 = 1) {
  const rec = record(c);
  await c.subscribeAsync(filter, { qos });
  await c.subscribeAsync(fence, { qos: 2 });
  return rec.until(onTopic(fence));
}

beforeAll(async () => {
  broker = await startBroker({ workers: 2 });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
});
afterAll(async () => {
  await broker.stop();
});

describe('retained messages', () => {
  it('are stored, replaced by a newer one, and deleted by an empty payload (v3.1.1 [MQTT-3.3.1-5], [MQTT-3.3.1-7], [MQTT-3.3.1-10], [MQTT-3.3.1-11])', async () => {
    const t = uniqueId('ret');
    const fence = `${t}-fence`;
    const pub = await client();
    await pub.publishAsync(fence, 'fence', { qos: 2, retain: true });

    await pub.publishAsync(`${t}/a`, 'first', { qos: 1, retain: true });
    let got = await retainedOnSubscribe(await client(), `${t}/#`, fence);
    expect(got.map((r) => [r.topic, r.payload.toString(), r.packet.retain])).toEqual([[`${t}/a`, 'first', true]]);

    await pub.publishAsync(`${t}/a`, 'second', { qos: 1, retain: true });
    got = await retainedOnSubscribe(await client(), `${t}/#`, fence);
    expect(got.map((r) => r.payload.toString())).toEqual(['second']);

    // A non-retained publish neither stores nor replaces (v5 [MQTT-3.3.1-8]).
    await pub.publishAsync(`${t}/a`, 'not retained', { qos: 1, retain: false });
    got = await retainedOnSubscribe(await client(), `${t}/#`, fence);
    expect(got.map((r) => r.payload.toString())).toEqual(['second']);

    // The empty retained message reaches current subscribers as a normal message, and deletes.
    const live = await client();
    const liveRec = record(live);
    await live.subscribeAsync(`${t}/a`, { qos: 1 });
    await liveRec.until(onTopic(`${t}/a`)); // the stored 'second', on subscribe
    await pub.publishAsync(`${t}/a`, '', { qos: 1, retain: true });
    const deletion = await liveRec.next();
    expect([deletion.payload.length, deletion.packet.retain]).toEqual([0, false]);

    got = await retainedOnSubscribe(await client(), `${t}/#`, fence);
    expect(got).toEqual([]);
    await pub.publishAsync(fence, '', { qos: 1, retain: true });
  });

  it('arrive with RETAIN=1 on a new subscription, and live messages to established subscriptions with RETAIN=0 (v3.1.1 [MQTT-3.3.1-8], [MQTT-3.3.1-9])', async () => {
    for (const protocolVersion of [4, 5] as const) {
      const t = uniqueId('flag');
      const pub = await client({ protocolVersion });
      await pub.publishAsync(`${t}/x`, 'stored', { qos: 1, retain: true });
      const sub = await client({ protocolVersion });
      const rec = record(sub);
      await sub.subscribeAsync(`${t}/x`, { qos: 1 });
      const stored = await rec.next();
      expect([stored.payload.toString(), stored.packet.retain], `v${protocolVersion}`).toEqual(['stored', true]);
      await pub.publishAsync(`${t}/x`, 'live', { qos: 1, retain: true });
      await rec.until((r) => r.payload.toString() === 'live');
      expect(rec.got.at(-1)!.packet.retain, `v${protocolVersion}`).toBe(false);
      await pub.publishAsync(`${t}/x`, '', { qos: 1, retain: true });
    }
  });

  it('are delivered at the minimum of their QoS and the subscription QoS', async () => {
    const t = uniqueId('retqos');
    const fence = `${t}-fence`;
    const pub = await client();
    await pub.publishAsync(fence, 'fence', { qos: 2, retain: true });
    await pub.publishAsync(`${t}/q1`, 'q1', { qos: 1, retain: true });
    await pub.publishAsync(`${t}/q2`, 'q2', { qos: 2, retain: true });
    for (const granted of [0, 1, 2] as const) {
      const got = await retainedOnSubscribe(await client(), `${t}/+`, fence, granted);
      const byTopic = Object.fromEntries(got.map((r) => [r.payload.toString(), r.packet.qos]));
      expect(byTopic, `subscription QoS ${granted}`).toEqual({ q1: Math.min(1, granted), q2: Math.min(2, granted) });
    }
    for (const topic of [fence, `${t}/q1`, `${t}/q2`]) await pub.publishAsync(topic, '', { qos: 1, retain: true });
  });

  it('published on one worker are served to a subscriber on another worker, and re-sent on a repeated SUBSCRIBE (v3.1.1 [MQTT-3.8.4-3])', async () => {
    const t = uniqueId('xworker');
    const fence = `${t}-fence`;
    const pub = await client();
    await pub.publishAsync(fence, 'fence', { qos: 2, retain: true });
    await pub.publishAsync(`${t}/x`, 'across', { qos: 1, retain: true });
    const { client: sub, worker } = await clientOffWorkerOf(pub);
    expect(worker).not.toBe(await workerOfClient(broker, pub));
    let got = await retainedOnSubscribe(sub, `${t}/#`, fence);
    expect(got.map((r) => [r.payload.toString(), r.packet.retain])).toEqual([['across', true]]);
    got = await retainedOnSubscribe(sub, `${t}/#`, fence);
    expect(got.map((r) => [r.payload.toString(), r.packet.retain])).toEqual([['across', true]]);
    await pub.publishAsync(`${t}/x`, '', { qos: 1, retain: true });
    await pub.publishAsync(fence, '', { qos: 1, retain: true });
  });

  it('keep their v5 properties (user properties, content type, response topic, correlation data, payload format) [MQTT-3.3.2-4], [MQTT-3.3.2-15..20]', async () => {
    const t = uniqueId('retprops');
    const pub = await client({ protocolVersion: 5 });
    const properties = {
      payloadFormatIndicator: true,
      contentType: 'application/json; charset=utf-8',
      responseTopic: `${t}/reply`,
      correlationData: Buffer.from([0, 1, 2, 0xfe, 0xff]),
      userProperties: { a: '1', repeated: ['x', 'y'], 'ünï': 'cødé' },
    };
    await pub.publishAsync(`${t}/x`, '{"v":1}', { qos: 1, retain: true, properties });
    const { client: sub } = await clientOffWorkerOf(pub, { protocolVersion: 5 });
    const rec = record(sub);
    await sub.subscribeAsync(`${t}/x`, { qos: 1 });
    const m = await rec.next();
    const p = m.packet.properties!;
    expect(m.packet.retain).toBe(true);
    expect(m.payload.toString()).toBe('{"v":1}');
    expect({
      payloadFormatIndicator: p.payloadFormatIndicator,
      contentType: p.contentType,
      responseTopic: p.responseTopic,
      correlationData: Buffer.from(p.correlationData!),
      userProperties: p.userProperties,
    }).toEqual(properties);
    await pub.publishAsync(`${t}/x`, '', { qos: 1, retain: true });
  });

  it('honour Message Expiry: an expired retained message is not sent, a live one is sent with the remaining interval [MQTT-3.3.2-5], [MQTT-3.3.2-6]', async () => {
    const t = uniqueId('retexp');
    const fence = `${t}-fence`;
    const pub = await client({ protocolVersion: 5 });
    await pub.publishAsync(fence, 'fence', { qos: 2, retain: true });
    await pub.publishAsync(`${t}/short`, 'short', { qos: 1, retain: true, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync(`${t}/long`, 'long', { qos: 1, retain: true, properties: { messageExpiryInterval: 100 } });
    const published = Date.now();

    let got = await retainedOnSubscribe(await client({ protocolVersion: 5 }), `${t}/+`, fence);
    expect(got.map((r) => r.payload.toString()).sort()).toEqual(['long', 'short']);

    // Expiry is the point here: let 1 s pass (plus margin) on the broker's clock.
    await new Promise((r) => setTimeout(r, Math.max(0, published + 1500 - Date.now())));
    got = await retainedOnSubscribe(await client({ protocolVersion: 5 }), `${t}/+`, fence);
    expect(got.map((r) => r.payload.toString())).toEqual(['long']);
    const remaining = got[0]!.packet.properties!.messageExpiryInterval!;
    expect(remaining).toBeLessThan(100);
    expect(remaining).toBeGreaterThanOrEqual(90);

    await pub.publishAsync(`${t}/long`, '', { qos: 1, retain: true });
    await pub.publishAsync(fence, '', { qos: 1, retain: true });
  });
});
