// Issue 3, connection lifecycle: refusals keep the connection up. UNSUBSCRIBE with nothing to remove,
// SUBSCRIBE refused by the ACL (per filter), PUBLISH refused by the ACL (v5 0x87; v3.1.1 dropped, or the
// connection closed with mqtt.v3DeniedPublish disconnect). After each refusal the same connection still
// publishes and receives. The default config refuses nothing.
import type mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { RawClient, uniqueId } from './helpers/clients.ts';
import { closedLine, endAll, subscriber } from './helpers/lifecycle.ts';

const ACL = JSON.stringify([
  { action: 'publish', topic: 'secret/#', allow: false },
  { action: 'subscribe', topic: 'private/#', allow: false },
]);

type Publish = mqttPacket.IPublishPacket;

function publish(raw: RawClient, topic: string, payload: string, qos: 0 | 1 | 2, messageId?: number): void {
  raw.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, messageId, dup: false, retain: false } as Publish);
}

/** Proves the connection still works both ways: subscribes to a fresh topic, publishes QoS 1 to it, gets it back. */
async function stillPublishesAndReceives(raw: RawClient, messageId: number): Promise<void> {
  const topic = `ok/${uniqueId()}`;
  raw.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos: 1 }] } as mqttPacket.ISubscribePacket);
  const suback = await raw.next<mqttPacket.ISubackPacket>('suback', 5000, (p) => p.messageId === messageId);
  expect(suback.granted).toEqual([1]);
  publish(raw, topic, 'echo', 1, messageId + 1);
  expect((await raw.next<mqttPacket.IPubackPacket>('puback', 5000, (p) => p.messageId === messageId + 1)).reasonCode ?? 0).toBe(0);
  const echo = await raw.next<Publish>('publish', 5000, (p) => p.topic === topic);
  expect(echo.payload.toString()).toBe('echo');
  if (echo.qos === 1) raw.send({ cmd: 'puback', messageId: echo.messageId });
  expect(raw.socket.destroyed).toBe(false);
}

async function connect(port: number, version: 4 | 5): Promise<RawClient> {
  const raw = await RawClient.connect(port, version);
  const ack = await raw.handshake();
  expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(0);
  return raw;
}

async function disconnect(raw: RawClient): Promise<void> {
  raw.send(raw.version === 5 ? ({ cmd: 'disconnect', reasonCode: 0 } as mqttPacket.IDisconnectPacket) : { cmd: 'disconnect' });
  await raw.closed;
}

describe('refusals keep the connection up (ACL: publish secret/# and subscribe private/# refused)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--timeouts.connectMs', '1000', '--acl', ACL] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('UNSUBSCRIBE with no subscription: v5 UNSUBACK 0x11 No subscription existed, connection kept [MQTT-3.10.4-5]', async () => {
    const raw = await connect(broker.port, 5);
    raw.send({ cmd: 'unsubscribe', messageId: 7, unsubscriptions: ['never/subscribed'] } as mqttPacket.IUnsubscribePacket);
    const unsuback = await raw.next<mqttPacket.IUnsubackPacket>('unsuback');
    expect(unsuback.messageId).toBe(7);
    expect((unsuback as unknown as { granted: number[] }).granted).toEqual([0x11]);
    await stillPublishesAndReceives(raw, 20);
    await disconnect(raw);
  });

  it('UNSUBSCRIBE with no subscription: v3.1.1 UNSUBACK, connection kept [MQTT-3.10.4-5]', async () => {
    const raw = await connect(broker.port, 4);
    raw.send({ cmd: 'unsubscribe', messageId: 8, unsubscriptions: ['never/subscribed'] } as mqttPacket.IUnsubscribePacket);
    expect((await raw.next<mqttPacket.IUnsubackPacket>('unsuback')).messageId).toBe(8);
    await stillPublishesAndReceives(raw, 20);
    await disconnect(raw);
  });

  for (const version of [4, 5] as const) {
    const refused = version === 5 ? 0x87 : 0x80;
    it(`SUBSCRIBE refused by the ACL: v${version === 5 ? '5' : '3.1.1'} SUBACK 0x${refused.toString(16)} for that filter, the others granted [MQTT-3.8.4-${version === 5 ? 6 : 5}]`, async () => {
      const raw = await connect(broker.port, version);
      const ok = `ok/${uniqueId()}`;
      const denied = `private/${uniqueId()}`;
      raw.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: denied, qos: 1 }, { topic: ok, qos: 1 }, { topic: `${ok}/2`, qos: 0 }] } as mqttPacket.ISubscribePacket);
      const suback = await raw.next<mqttPacket.ISubackPacket>('suback');
      expect(suback.granted).toEqual([refused, 1, 0]);
      // Refused for real: a publish to the refused filter does not reach this client; one to the granted
      // filter, sent after it by the same publisher, does (and would come second otherwise).
      const publisher = await connect(broker.port, 5);
      publish(publisher, denied, 'must-not-arrive', 1, 1);
      await publisher.next('puback');
      publish(publisher, ok, 'granted', 1, 2);
      const first = await raw.next<Publish>('publish');
      expect(first.topic).toBe(ok);
      raw.send({ cmd: 'puback', messageId: first.messageId });
      await stillPublishesAndReceives(raw, 20);
      await disconnect(publisher);
      await disconnect(raw);
    });
  }

  it('PUBLISH refused by the ACL: v5 PUBACK 0x87 (QoS 1), PUBREC 0x87 (QoS 2, flow ended), QoS 0 dropped; nothing delivered; connection kept', async () => {
    const watcher = await subscriber(broker.port, 'secret/#');
    await watcher.client.subscribeAsync('okmark/#', { qos: 1 });
    const raw = await connect(broker.port, 5);
    publish(raw, 'secret/a', 'q0', 0);
    publish(raw, 'secret/a', 'q1', 1, 1);
    expect((await raw.next<mqttPacket.IPubackPacket>('puback')).reasonCode).toBe(0x87);
    publish(raw, 'secret/a', 'q2', 2, 2);
    expect((await raw.next<mqttPacket.IPubrecPacket>('pubrec')).reasonCode).toBe(0x87);
    // A PUBREC >= 0x80 ends the QoS 2 flow: the packet id is free again at once.
    publish(raw, 'okmark/a', 'after', 2, 2);
    expect((await raw.next<mqttPacket.IPubrecPacket>('pubrec')).reasonCode ?? 0).toBe(0);
    raw.send({ cmd: 'pubrel', messageId: 2 });
    await raw.next('pubcomp');
    // The watcher's first message is the one published after the refused ones.
    const [first] = await watcher.got.next(1, 10_000);
    expect(first!.topic).toBe('okmark/a');
    await stillPublishesAndReceives(raw, 20);
    await disconnect(raw);
    await endAll([watcher.client]);
  });

  it('PUBLISH refused by the ACL: v3.1.1 dropped silently, the QoS flow completes positively, connection kept [MQTT-3.3.5-2]', async () => {
    const watcher = await subscriber(broker.port, 'secret/#');
    await watcher.client.subscribeAsync('okmark/#', { qos: 1 });
    const raw = await connect(broker.port, 4);
    publish(raw, 'secret/b', 'q0', 0);
    publish(raw, 'secret/b', 'q1', 1, 1);
    expect((await raw.next<mqttPacket.IPubackPacket>('puback')).messageId).toBe(1);
    publish(raw, 'secret/b', 'q2', 2, 2);
    expect((await raw.next<mqttPacket.IPubrecPacket>('pubrec')).messageId).toBe(2);
    raw.send({ cmd: 'pubrel', messageId: 2 });
    expect((await raw.next<mqttPacket.IPubcompPacket>('pubcomp')).messageId).toBe(2);
    publish(raw, 'okmark/b', 'after', 1, 3);
    await raw.next('puback');
    const [first] = await watcher.got.next(1, 10_000);
    expect(first!.topic).toBe('okmark/b');
    await stillPublishesAndReceives(raw, 20);
    await disconnect(raw);
    await endAll([watcher.client]);
  });
});

describe('mqtt.v3DeniedPublish disconnect', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--timeouts.connectMs', '1000', '--acl', ACL, '--mqtt.v3DeniedPublish', 'disconnect'] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('closes a v3.1.1 client publishing where it may not (not_authorized), publishes its will; v5 still gets 0x87 and stays', async () => {
    const willTopic = `okwill/${uniqueId()}`;
    const watcher = await subscriber(broker.port, willTopic);
    const v3 = await RawClient.connect(broker.port, 4);
    const clientId = uniqueId('denied');
    await v3.handshake({ clientId, will: { topic: willTopic, payload: Buffer.from('denied'), qos: 1, retain: false } as mqttPacket.IConnectPacket['will'] });
    publish(v3, 'secret/c', 'x', 1, 1);
    expect(await v3.closedWithin(5000)).toBe(true);
    expect(v3.received.filter((p) => p.cmd === 'puback')).toEqual([]);
    const line = await closedLine(broker, { clientId });
    expect(line.reason).toBe('not_authorized');
    expect(line.initiator).toBe('server');
    expect((await watcher.got.next(1, 10_000))[0]!.payload.toString()).toBe('denied');
    const v5 = await connect(broker.port, 5);
    publish(v5, 'secret/c', 'x', 1, 1);
    expect((await v5.next<mqttPacket.IPubackPacket>('puback')).reasonCode).toBe(0x87);
    await stillPublishesAndReceives(v5, 20);
    await disconnect(v5);
    await endAll([watcher.client]);
  });
});

describe('the default config refuses nothing', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--timeouts.connectMs', '1000'] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('grants SUBSCRIBE to private/# and delivers PUBLISH to secret/# (v3.1.1 and v5)', async () => {
    for (const version of [4, 5] as const) {
      const raw = await connect(broker.port, version);
      raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'private/#', qos: 1 }, { topic: 'secret/#', qos: 1 }] } as mqttPacket.ISubscribePacket);
      expect((await raw.next<mqttPacket.ISubackPacket>('suback')).granted).toEqual([1, 1]);
      publish(raw, 'secret/x', `s${version}`, 1, 2);
      expect((await raw.next<mqttPacket.IPubackPacket>('puback')).reasonCode ?? 0).toBe(0);
      publish(raw, 'private/x', `p${version}`, 1, 3);
      await raw.next('puback');
      const got = [await raw.next<Publish>('publish'), await raw.next<Publish>('publish')];
      expect(got.map((p) => p.payload.toString()).sort()).toEqual([`p${version}`, `s${version}`]);
      await disconnect(raw);
    }
  });
});
