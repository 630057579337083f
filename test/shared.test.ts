// Shared subscriptions ($share/{group}/{filter}, MQTT 5.0 §4.8.2) against a real 2-worker broker:
// one member per group per message, across workers; groups independent of each other and of plain
// subscribers; invalid share names refused.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IClientOptions, MqttClient } from 'mqtt';
import type mqttPacket from 'mqtt-packet';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, RawClient, uniqueId, type Received } from './helpers/clients.ts';
import { connectOffWorker, workerOfClient } from './helpers/cross-worker.ts';
import { record, type Recorder } from './helpers/receive.ts';

let broker: BrokerProcess;
const clients: MqttClient[] = [];
const raws: RawClient[] = [];

async function client(opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectClient(broker.port, { protocolVersion: 5, ...opts });
  clients.push(c);
  return c;
}

async function clientOffWorkerOf(other: MqttClient, opts: IClientOptions = {}): Promise<MqttClient> {
  const { client: c } = await connectOffWorker(broker, await workerOfClient(broker, other), { protocolVersion: 5, ...opts });
  clients.push(c);
  return c;
}

interface Member {
  client: MqttClient;
  rec: Recorder;
}

/** A client subscribed to `filter` (QoS 1) and to the plain fence topic (QoS 2). */
async function member(c: MqttClient, filter: string, fence: string): Promise<Member> {
  const rec = record(c);
  await c.subscribeAsync(filter, { qos: 1 });
  await c.subscribeAsync(fence, { qos: 2 });
  return { client: c, rec };
}

/**
 * What a member received from `publishers` publishers, each of which ends with one fence message: plain
 * subscribers all get every fence, and each publisher's messages reach a given client in order.
 */
async function receivedBeforeFences(m: Member, fence: string, publishers: number): Promise<Received[]> {
  let fences = 0;
  const got = await m.rec.until((r) => r.topic === fence && ++fences === publishers, 10_000);
  return got.filter((r) => r.topic !== fence);
}

async function publishNumbered(pub: MqttClient, topic: string, from: number, count: number, fence: string): Promise<void> {
  for (let i = from; i < from + count; i++) await pub.publishAsync(topic, `m${i}`, { qos: 1 });
  await pub.publishAsync(fence, 'fence', { qos: 2 });
}

beforeAll(async () => {
  broker = await startBroker({ workers: 2 });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  for (const r of raws.splice(0)) r.destroy();
});
afterAll(async () => {
  await broker.stop();
});

describe('shared subscriptions', () => {
  it('send each message to exactly one member of the group: 3 members on 2 workers, 30 messages from both workers', async () => {
    const t = uniqueId('share');
    const fence = `${t}-fence`;
    const filter = `$share/workers/${t}/jobs/+`;
    const first = await client();
    const second = await clientOffWorkerOf(first);
    const third = await client();
    const members = [await member(first, filter, fence), await member(second, filter, fence), await member(third, filter, fence)];
    const memberWorkers = new Set(await Promise.all(members.map((m) => workerOfClient(broker, m.client))));
    expect(memberWorkers.size).toBe(2);

    const pubA = await client();
    const pubB = await clientOffWorkerOf(pubA);
    await Promise.all([publishNumbered(pubA, `${t}/jobs/a`, 0, 15, fence), publishNumbered(pubB, `${t}/jobs/b`, 15, 15, fence)]);

    const perMember = await Promise.all(members.map((m) => receivedBeforeFences(m, fence, 2)));
    const all = perMember.flat().map((r) => r.payload.toString());
    expect(all).toHaveLength(30);
    expect(new Set(all).size).toBe(30);
    expect(perMember.filter((got) => got.length > 0).length).toBeGreaterThan(1);
  });

  it('deliver every message to each of two groups on the same filter, and to a plain subscriber alongside', async () => {
    const t = uniqueId('groups');
    const fence = `${t}-fence`;
    const g1 = [await client(), await client()];
    const g2 = [await clientOffWorkerOf(g1[0]!), await client()];
    const members1 = await Promise.all(g1.map((c) => member(c, `$share/one/${t}/x`, fence)));
    const members2 = await Promise.all(g2.map((c) => member(c, `$share/two/${t}/x`, fence)));
    const plain = await member(await client(), `${t}/x`, fence);

    const pub = await client();
    await publishNumbered(pub, `${t}/x`, 0, 20, fence);
    const expected = Array.from({ length: 20 }, (_, i) => `m${i}`).sort();
    for (const group of [members1, members2]) {
      const got = (await Promise.all(group.map((m) => receivedBeforeFences(m, fence, 1)))).flat().map((r) => r.payload.toString());
      expect(got.sort()).toEqual(expected);
    }
    const plainGot = await receivedBeforeFences(plain, fence, 1);
    expect(plainGot.map((r) => r.payload.toString())).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
  });

  it('keep delivering every message to the remaining members after one member unsubscribes', async () => {
    const t = uniqueId('share-leave');
    const fence = `${t}-fence`;
    const filter = `$share/g/${t}/x`;
    const a = await client();
    const b = await clientOffWorkerOf(a);
    const c = await client();
    const members = [await member(a, filter, fence), await member(b, filter, fence), await member(c, filter, fence)];
    // The member alone on its worker leaves, so the route to that worker must go too.
    const workers = await Promise.all(members.map((m) => workerOfClient(broker, m.client)));
    const leaving = members.findIndex((_, i) => workers.filter((w) => w === workers[i]).length === 1);
    expect(leaving).toBeGreaterThanOrEqual(0);
    await members[leaving]!.client.unsubscribeAsync(filter);

    const pub = await client();
    await publishNumbered(pub, `${t}/x`, 0, 20, fence);
    const got = await Promise.all(members.map((m) => receivedBeforeFences(m, fence, 1)));
    expect(got[leaving]).toEqual([]);
    expect(got.flat().map((r) => r.payload.toString()).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`).sort());
  });

  it('do not receive retained messages when the subscription is made (MQTT 5.0 §4.8.2)', async () => {
    const t = uniqueId('share-ret');
    const pub = await client();
    await pub.publishAsync(`${t}/x`, 'kept', { qos: 1, retain: true });
    await pub.publishAsync(`${t}-fence`, 'fence', { qos: 2, retain: true });
    const sub = await clientOffWorkerOf(pub);
    const rec = record(sub);
    await sub.subscribeAsync(`$share/g/${t}/x`, { qos: 1 });
    // Retained lookups are answered in order: the fence's retained message comes after any for the group.
    await sub.subscribeAsync(`${t}-fence`, { qos: 2 });
    expect(await rec.until((r) => r.topic === `${t}-fence`)).toEqual([]);
    // Live messages still reach the group.
    await pub.publishAsync(`${t}/x`, 'live', { qos: 1 });
    const live = await rec.next();
    expect([live.payload.toString(), live.packet.retain]).toEqual(['live', false]);
    await pub.publishAsync(`${t}/x`, '', { qos: 1, retain: true });
    await pub.publishAsync(`${t}-fence`, '', { qos: 1, retain: true });
  });

  it('refuse invalid share names and filters with SUBACK 0x8F, granting the valid filter in the same SUBSCRIBE [MQTT-4.8.2-1], [MQTT-4.8.2-2]', async () => {
    const t = uniqueId('share-bad');
    const r = await RawClient.connect(broker.port, 5);
    raws.push(r);
    expect((await r.handshake()).reasonCode).toBe(0);
    const invalid = ['$share/g+/x', '$share/g#/x', '$share//x', '$share/g', '$share/g/', '$share/g/a/#/b', '$share/g/a+'];
    r.send({
      cmd: 'subscribe',
      messageId: 3,
      subscriptions: [{ topic: `$share/ok/${t}/x`, qos: 1 }, ...invalid.map((topic) => ({ topic, qos: 1 as const }))],
    } as mqttPacket.ISubscribePacket);
    const suback = await r.next<mqttPacket.ISubackPacket>('suback');
    expect(suback.granted).toEqual([1, ...invalid.map(() => 0x8f)]);

    const pub = await client();
    await pub.publishAsync(`${t}/x`, 'to the group', { qos: 1 });
    const got = await r.next<mqttPacket.IPublishPacket>('publish');
    expect([got.topic, got.payload.toString()]).toEqual([`${t}/x`, 'to the group']);
    expect(await r.closedWithin(200)).toBe(false);
  });

  it('treat No Local on a shared subscription as a protocol error: DISCONNECT 0x82 [MQTT-3.8.3-4]', async () => {
    const r = await RawClient.connect(broker.port, 5);
    raws.push(r);
    await r.handshake();
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$share/g/${uniqueId('nl')}`, qos: 1, nl: true }] } as mqttPacket.ISubscribePacket);
    const d = await r.next<mqttPacket.IDisconnectPacket>('disconnect');
    expect(d.reasonCode).toBe(0x82);
    expect(await r.closedWithin(5000)).toBe(true);
  });
});
