// SUBSCRIBE / SUBACK and UNSUBSCRIBE / UNSUBACK against a real 2-worker broker: wildcard matching,
// invalid filters, $-topics, QoS capping, overlapping subscriptions and the v5 subscription options.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IClientOptions, MqttClient } from 'mqtt';
import type mqttPacket from 'mqtt-packet';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, RawClient, uniqueId, type Received } from './helpers/clients.ts';
import { connectOffWorker, workerOfClient } from './helpers/cross-worker.ts';
import { onTopic, record } from './helpers/receive.ts';

let broker: BrokerProcess;
const clients: MqttClient[] = [];
const raws: RawClient[] = [];

async function client(opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await connectClient(broker.port, opts);
  clients.push(c);
  return c;
}

/** A client guaranteed to live on a different worker thread than `other`. */
async function clientOffWorkerOf(other: MqttClient, opts: IClientOptions = {}): Promise<MqttClient> {
  const { client: c } = await connectOffWorker(broker, await workerOfClient(broker, other), opts);
  clients.push(c);
  return c;
}

async function raw(version: 4 | 5, connect: Partial<mqttPacket.IConnectPacket> = {}): Promise<RawClient> {
  const r = await RawClient.connect(broker.port, version);
  raws.push(r);
  const ack = await r.handshake(connect);
  expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(0);
  return r;
}

function subIds(r: Received): number[] {
  const id = r.packet.properties?.subscriptionIdentifier;
  if (id === undefined) return [];
  return (Array.isArray(id) ? id : [id]).slice().sort((a, b) => a - b);
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

describe('SUBSCRIBE / SUBACK', () => {
  it('matches + and # level by level, sport/# also matching sport itself [MQTT-4.7.1-2], [MQTT-4.7.1-3]', async () => {
    const t = uniqueId('wild');
    const topics = ['sport', 'sport/', 'sport/tennis', 'sport/tennis/player1', 'finance'];
    const expected: Record<string, string[]> = {
      'sport/#': ['sport', 'sport/', 'sport/tennis', 'sport/tennis/player1'],
      'sport/+': ['sport/', 'sport/tennis'],
      '+/tennis': ['sport/tennis'],
      'sport/tennis/+': ['sport/tennis/player1'],
      '#': ['sport', 'sport/', 'sport/tennis', 'sport/tennis/player1', 'finance'],
      '+': ['sport', 'finance'],
      'sport/tennis/player1/#': ['sport/tennis/player1'],
    };
    const fence = `${t}/fence`;
    const subs = await Promise.all(
      Object.keys(expected).map(async (filter) => {
        const c = await client();
        const rec = record(c);
        await c.subscribeAsync({ [`${t}/${filter}`]: { qos: 1 }, [fence]: { qos: 2 } });
        return { filter, rec };
      }),
    );
    const pub = await client();
    for (const topic of topics) await pub.publishAsync(`${t}/${topic}`, topic, { qos: 1 });
    await pub.publishAsync(fence, 'fence', { qos: 2 });
    for (const { filter, rec } of subs) {
      const before = await rec.until(onTopic(fence));
      expect(before.map((r) => r.topic.slice(t.length + 1)).sort(), `filter ${t}/${filter}`).toEqual([...expected[filter]!].sort());
    }
  });

  for (const version of [4, 5] as const) {
    const bad = version === 5 ? 0x8f : 0x80;
    it(`v${version === 4 ? '3.1.1' : '5'}: invalid filters (a/#/b, a+, empty) get SUBACK 0x${bad.toString(16)} while the others are granted, and the connection stays up [MQTT-4.7.1-2], [MQTT-4.7.1-3], [MQTT-4.7.3-1]`, async () => {
      const t = uniqueId('invalid');
      const r = await raw(version);
      r.send({
        cmd: 'subscribe',
        messageId: 7,
        subscriptions: [
          { topic: `${t}/ok`, qos: 0 },
          { topic: 'a/#/b', qos: 1 },
          { topic: 'a+', qos: 1 },
          { topic: '', qos: 1 },
          { topic: `${t}/ok2/#`, qos: 1 },
        ],
      } as mqttPacket.ISubscribePacket);
      const suback = await r.next<mqttPacket.ISubackPacket>('suback');
      expect(suback.messageId).toBe(7);
      expect(suback.granted).toEqual([0, bad, bad, bad, 1]);
      // Still up and subscribed: PINGREQ is answered and the granted filters deliver.
      r.send({ cmd: 'pingreq' });
      await r.next('pingresp');
      const pub = await client();
      await pub.publishAsync(`${t}/ok2/x`, 'granted', { qos: 1 });
      const got = await r.next<mqttPacket.IPublishPacket>('publish');
      expect(got.topic).toBe(`${t}/ok2/x`);
      expect(got.payload.toString()).toBe('granted');
      expect(await r.closedWithin(200)).toBe(false);
    });
  }

  it('does not match $-topics with # or +/… at the first level, but does with explicit $…/# and $…/+ filters [MQTT-4.7.2-1]', async () => {
    // Clients may not publish under $SYS/ (the broker's own), so the $-topic here is an application one.
    const t = uniqueId('dollar');
    const dollarTopic = `$app/${t}`;
    const fence = `x/${t}`;
    const hash = await client();
    const plus = await client();
    const dollarHash = await client();
    const dollarPlus = await client();
    const [rHash, rPlus, rDollarHash, rDollarPlus] = [record(hash), record(plus), record(dollarHash), record(dollarPlus)];
    await hash.subscribeAsync('#', { qos: 1 });
    await plus.subscribeAsync(`+/${t}`, { qos: 1 });
    await dollarHash.subscribeAsync('$app/#', { qos: 1 });
    await dollarPlus.subscribeAsync('$app/+', { qos: 1 });
    const pub = await client();
    await pub.publishAsync(dollarTopic, 'dollar', { qos: 1 });
    await pub.publishAsync(fence, 'fence', { qos: 1 });
    for (const rec of [rHash, rPlus]) {
      const before = await rec.until(onTopic(fence));
      expect(before.filter((r) => r.topic === dollarTopic)).toEqual([]);
    }
    for (const rec of [rDollarHash, rDollarPlus]) {
      const before = await rec.until(onTopic(dollarTopic));
      expect(before).toEqual([]);
    }
  });

  it('delivers at the minimum of the published QoS and the granted QoS [MQTT-3.8.4-6] (v3.1.1)', async () => {
    const t = uniqueId('qos');
    const fence = `${t}/fence`;
    const subs = await Promise.all(
      ([0, 1, 2] as const).map(async (granted) => {
        const c = await client();
        const rec = record(c);
        const acks = await c.subscribeAsync({ [`${t}/m`]: { qos: granted }, [fence]: { qos: 2 } });
        expect(acks.find((a) => a.topic === `${t}/m`)?.qos).toBe(granted);
        return { granted, rec };
      }),
    );
    const pub = await client();
    for (const qos of [0, 1, 2] as const) await pub.publishAsync(`${t}/m`, `q${qos}`, { qos });
    await pub.publishAsync(fence, 'fence', { qos: 2 });
    for (const { granted, rec } of subs) {
      const got = await rec.until(onTopic(fence));
      expect(got.map((r) => [r.payload.toString(), r.packet.qos])).toEqual([0, 1, 2].map((q) => [`q${q}`, Math.min(q, granted)]));
    }
  });

  it('sends ONE copy at the highest QoS to a client whose overlapping subscriptions both match, across workers [MQTT-3.3.4-2] (v5), [MQTT-3.3.5-1] (v3.1.1)', async () => {
    for (const protocolVersion of [4, 5] as const) {
      const t = uniqueId('overlap');
      const sub = await client({ protocolVersion });
      const rec = record(sub);
      await sub.subscribeAsync(`${t}/#`, { qos: 0 });
      await sub.subscribeAsync(`${t}/b`, { qos: 2 });
      await sub.subscribeAsync(`${t}/fence`, { qos: 2 });
      const pub = await clientOffWorkerOf(sub);
      await pub.publishAsync(`${t}/b`, 'two', { qos: 2 });
      await pub.publishAsync(`${t}/b`, 'one', { qos: 1 });
      await pub.publishAsync(`${t}/fence`, 'fence', { qos: 2 });
      const got = await rec.until(onTopic(`${t}/fence`));
      // Sorted: the mqtt client surfaces a QoS 2 message on PUBREL, possibly after a later QoS 1 one.
      expect(got.map((r) => [r.payload.toString(), r.packet.qos]).sort(), `v${protocolVersion}`).toEqual([
        ['one', 1],
        ['two', 2],
      ]);
    }
  });

  it('replaces the options of an existing subscription when the same filter is subscribed again [MQTT-3.8.4-3]', async () => {
    const t = uniqueId('resub');
    const sub = await client();
    const rec = record(sub);
    const pub = await clientOffWorkerOf(sub);
    const fence = `${t}/fence`;
    await sub.subscribeAsync(fence, { qos: 2 });
    for (const granted of [0, 2, 1] as const) {
      const [ack] = await sub.subscribeAsync(`${t}/r`, { qos: granted });
      expect(ack!.qos).toBe(granted);
      await pub.publishAsync(`${t}/r`, `after-${granted}`, { qos: 2 });
      await pub.publishAsync(fence, 'fence', { qos: 2 });
      const got = await rec.until(onTopic(fence));
      // One subscription, not one per SUBSCRIBE: a single copy at the latest granted QoS.
      expect(got.map((r) => [r.payload.toString(), r.packet.qos])).toEqual([[`after-${granted}`, granted]]);
    }
  });

  it('v5 maximum QoS: a broker limited to QoS 1 grants at most 1 and delivers at most QoS 1', async () => {
    const limited = await startBroker({ workers: 2, args: ['--mqtt.maximumQoS', '1'] });
    try {
      const t = uniqueId('maxqos');
      const sub = await connectClient(limited.port, { protocolVersion: 5 });
      const got = record(sub);
      const [ack] = await sub.subscribeAsync(`${t}/x`, { qos: 2 });
      expect(ack!.qos).toBe(1);
      const v3 = await connectClient(limited.port, { protocolVersion: 4 });
      const [ack3] = await v3.subscribeAsync(`${t}/x`, { qos: 2 });
      expect(ack3!.qos).toBe(1);
      const pub = await connectClient(limited.port, { protocolVersion: 4 });
      await pub.publishAsync(`${t}/x`, 'capped', { qos: 1 });
      const m = await got.next();
      expect(m.packet.qos).toBe(1);
      await Promise.all([sub, v3, pub].map((c) => c.endAsync(true)));
    } finally {
      await limited.stop();
    }
  });
});

describe('v5 subscription options', () => {
  it('No Local: a client does not receive its own publications, others and other publishers still flow [MQTT-3.8.3-3]', async () => {
    const t = uniqueId('nl');
    const a = await client({ protocolVersion: 5 });
    const recA = record(a);
    await a.subscribeAsync(`${t}/nl`, { qos: 1, nl: true });
    await a.subscribeAsync(`${t}/fence`, { qos: 2 });
    const b = await clientOffWorkerOf(a, { protocolVersion: 5 });
    const recB = record(b);
    await b.subscribeAsync(`${t}/nl`, { qos: 1 });

    await a.publishAsync(`${t}/nl`, 'own', { qos: 1 });
    await a.publishAsync(`${t}/fence`, 'fence', { qos: 2 });
    expect(await recA.until(onTopic(`${t}/fence`))).toEqual([]);
    const atB = await recB.next();
    expect(atB.payload.toString()).toBe('own');

    await b.publishAsync(`${t}/nl`, 'from-b', { qos: 1 });
    await b.publishAsync(`${t}/fence`, 'fence', { qos: 2 });
    const got = await recA.until(onTopic(`${t}/fence`));
    expect(got.map((r) => r.payload.toString())).toEqual(['from-b']);
  });

  it('Retain As Published keeps RETAIN=1 on live forwarding; without it (and for v3.1.1) RETAIN is 0 [MQTT-3.3.1-12], [MQTT-3.3.1-13]', async () => {
    const t = uniqueId('rap');
    const withRap = await client({ protocolVersion: 5 });
    const withoutRap = await client({ protocolVersion: 5 });
    const v3 = await client({ protocolVersion: 4 });
    const recs = [withRap, withoutRap, v3].map(record);
    await withRap.subscribeAsync(`${t}/x`, { qos: 1, rap: true });
    await withoutRap.subscribeAsync(`${t}/x`, { qos: 1, rap: false });
    await v3.subscribeAsync(`${t}/x`, { qos: 1 });
    const pub = await clientOffWorkerOf(withRap, { protocolVersion: 5 });
    await pub.publishAsync(`${t}/x`, 'retained', { qos: 1, retain: true });
    await pub.publishAsync(`${t}/x`, 'plain', { qos: 1, retain: false });
    const flags = await Promise.all(recs.map((rec) => rec.until((r) => r.payload.toString() === 'plain').then(() => rec.got.map((r) => [r.payload.toString(), r.packet.retain]))));
    expect(flags).toEqual([
      [['retained', true], ['plain', false]],
      [['retained', false], ['plain', false]],
      [['retained', false], ['plain', false]],
    ]);
    await pub.publishAsync(`${t}/x`, '', { qos: 1, retain: true });
  });

  it('Retain Handling 0 sends retained on every SUBSCRIBE, 1 only for a new subscription, 2 never [MQTT-3.3.1-9], [MQTT-3.3.1-10], [MQTT-3.3.1-11]', async () => {
    const t = uniqueId('rh');
    const pub = await client({ protocolVersion: 5 });
    await pub.publishAsync(`${t}/data`, 'kept', { qos: 1, retain: true });
    await pub.publishAsync(`${t}/fence`, 'fence', { qos: 1, retain: true });

    /**
     * Retained messages reach a subscriber after a lookup in the hub, answered in request order: subscribing
     * to the retained fence after the subscription under test proves what that subscription was sent.
     */
    async function subscribeAndFence(c: MqttClient, rec: ReturnType<typeof record>, rh: 0 | 1 | 2): Promise<string[]> {
      await c.subscribeAsync(`${t}/data`, { qos: 1, rh });
      await c.subscribeAsync(`${t}/fence`, { qos: 1, rh: 0 });
      const got = await rec.until(onTopic(`${t}/fence`));
      for (const r of got) expect(r.packet.retain).toBe(true);
      return got.map((r) => r.payload.toString());
    }
    const expectations: Array<[0 | 1 | 2, string[], string[]]> = [
      [0, ['kept'], ['kept']],
      [1, ['kept'], []],
      [2, [], []],
    ];
    for (const [rh, first, again] of expectations) {
      const c = await client({ protocolVersion: 5 });
      const rec = record(c);
      expect(await subscribeAndFence(c, rec, rh), `rh=${rh} new subscription`).toEqual(first);
      expect(await subscribeAndFence(c, rec, rh), `rh=${rh} existing subscription`).toEqual(again);
    }
    await pub.publishAsync(`${t}/data`, '', { qos: 1, retain: true });
    await pub.publishAsync(`${t}/fence`, '', { qos: 1, retain: true });
  });

  it('Subscription Identifiers: one copy carries the ids of every matching subscription, publisher on another worker [MQTT-3.3.4-3]', async () => {
    const t = uniqueId('subid');
    const sub = await client({ protocolVersion: 5 });
    const rec = record(sub);
    const fence = `${t}-fence`;
    await sub.subscribeAsync(`${t}/#`, { qos: 1, properties: { subscriptionIdentifier: 7 } });
    await sub.subscribeAsync(`${t}/a/+`, { qos: 0, properties: { subscriptionIdentifier: 9 } });
    await sub.subscribeAsync(fence, { qos: 2 });
    const pub = await clientOffWorkerOf(sub, { protocolVersion: 5 });

    await pub.publishAsync(`${t}/a/b`, 'both', { qos: 1 });
    await pub.publishAsync(`${t}/c`, 'one', { qos: 1 });
    await pub.publishAsync(fence, 'fence', { qos: 2 });
    let got = await rec.until(onTopic(fence));
    expect(got.map((r) => [r.payload.toString(), subIds(r), r.packet.qos])).toEqual([
      ['both', [7, 9], 1],
      ['one', [7], 1],
    ]);
    // The fence subscription has no identifier, and the fence carries none [MQTT-3.3.4-3].
    expect(rec.got.filter((r) => r.topic === fence).map(subIds)).toEqual([[]]);

    // Subscribing again without an identifier removes it from that subscription [MQTT-3.8.4-3].
    await sub.subscribeAsync(`${t}/a/+`, { qos: 0 });
    await pub.publishAsync(`${t}/a/b`, 'again', { qos: 1 });
    await pub.publishAsync(fence, 'fence', { qos: 2 });
    got = await rec.until(onTopic(fence));
    expect(got.map((r) => [r.payload.toString(), subIds(r)])).toEqual([['again', [7]]]);
  });

  it('Subscription Identifier is sent with the retained messages a new subscription receives', async () => {
    const t = uniqueId('subid-ret');
    const pub = await client({ protocolVersion: 5 });
    await pub.publishAsync(`${t}/x`, 'kept', { qos: 1, retain: true });
    const sub = await clientOffWorkerOf(pub, { protocolVersion: 5 });
    const rec = record(sub);
    await sub.subscribeAsync(`${t}/+`, { qos: 1, properties: { subscriptionIdentifier: 42 } });
    const m = await rec.next();
    expect([m.payload.toString(), m.packet.retain, subIds(m)]).toEqual(['kept', true, [42]]);
    await pub.publishAsync(`${t}/x`, '', { qos: 1, retain: true });
  });
});

describe('UNSUBSCRIBE / UNSUBACK', () => {
  it('v5: 0x00 for an existing subscription, 0x11 for none; the connection stays up and nothing more is delivered on it [MQTT-3.10.4-1], [MQTT-3.10.4-2], [MQTT-3.11.3-1]', async () => {
    const t = uniqueId('unsub5');
    const r = await raw(5);
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${t}/u`, qos: 1 }, { topic: `${t}/keep`, qos: 1 }] } as mqttPacket.ISubscribePacket);
    expect((await r.next<mqttPacket.ISubackPacket>('suback')).granted).toEqual([1, 1]);
    const pub = await client({ protocolVersion: 5 });

    await pub.publishAsync(`${t}/u`, 'before', { qos: 0 });
    const before = await r.next<mqttPacket.IPublishPacket>('publish');
    expect(before.payload.toString()).toBe('before');

    r.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: [`${t}/u`, `${t}/none`] });
    const unsuback = await r.next<mqttPacket.IUnsubackPacket>('unsuback');
    expect(unsuback.messageId).toBe(2);
    expect((unsuback as unknown as { granted: number[] }).granted).toEqual([0x00, 0x11]);

    await pub.publishAsync(`${t}/u`, 'after', { qos: 1 });
    await pub.publishAsync(`${t}/keep`, 'kept', { qos: 1 });
    const next = await r.next<mqttPacket.IPublishPacket>('publish');
    expect([next.topic, next.payload.toString()]).toEqual([`${t}/keep`, 'kept']);
    r.send({ cmd: 'puback', messageId: next.messageId, reasonCode: 0 });

    // Unsubscribing again: nothing to remove, still acknowledged, still connected.
    r.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: [`${t}/u`] });
    expect((await r.next<mqttPacket.IUnsubackPacket>('unsuback') as unknown as { granted: number[] }).granted).toEqual([0x11]);
    r.send({ cmd: 'pingreq' });
    await r.next('pingresp');
    expect(r.received.filter((p) => p.cmd === 'publish')).toEqual([]);
  });

  it('v3.1.1: UNSUBACK even when nothing matched; after UNSUBSCRIBE nothing more is delivered, other subscriptions continue [MQTT-3.10.4-2], [MQTT-3.10.4-4], [MQTT-3.10.4-5]', async () => {
    const t = uniqueId('unsub3');
    const sub = await client({ protocolVersion: 4 });
    const rec = record(sub);
    await sub.subscribeAsync([`${t}/u`, `${t}/fence`], { qos: 2 });
    const pub = await clientOffWorkerOf(sub);

    const r = await raw(4);
    r.send({ cmd: 'unsubscribe', messageId: 9, unsubscriptions: [`${t}/never-subscribed`] });
    expect((await r.next<mqttPacket.IUnsubackPacket>('unsuback')).messageId).toBe(9);
    r.send({ cmd: 'pingreq' });
    await r.next('pingresp');

    await pub.publishAsync(`${t}/u`, 'before', { qos: 1 });
    // PUBACK means routed, not delivered: wait for it, or the UNSUBSCRIBE could overtake it.
    await rec.until((r) => r.payload.toString() === 'before');
    await sub.unsubscribeAsync(`${t}/u`);
    await pub.publishAsync(`${t}/u`, 'after', { qos: 1 });
    await pub.publishAsync(`${t}/fence`, 'fence', { qos: 2 });
    const got = await rec.until(onTopic(`${t}/fence`));
    expect(got.map((m) => m.payload.toString())).toEqual([]);
  });

  it('unsubscribing a shared subscription by its full $share filter stops its deliveries', async () => {
    const t = uniqueId('unsub-share');
    const sub = await client({ protocolVersion: 5 });
    const rec = record(sub);
    await sub.subscribeAsync([`$share/g/${t}/x`, `${t}/fence`], { qos: 2 });
    const pub = await clientOffWorkerOf(sub, { protocolVersion: 5 });
    await pub.publishAsync(`${t}/x`, 'before', { qos: 1 });
    await rec.until((r) => r.payload.toString() === 'before');
    const ack = await sub.unsubscribeAsync(`$share/g/${t}/x`);
    expect((ack as unknown as { reasonCode?: number } | undefined)?.reasonCode ?? 0).toBe(0);
    await pub.publishAsync(`${t}/x`, 'after', { qos: 1 });
    await pub.publishAsync(`${t}/fence`, 'fence', { qos: 2 });
    const got = await rec.until(onTopic(`${t}/fence`));
    expect(got.map((m) => m.payload.toString())).toEqual([]);
  });
});
