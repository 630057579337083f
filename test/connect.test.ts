// CONNECT / CONNACK: protocol versions, refusals, client identifiers, and what a v5 CONNACK announces.
import type { IConnackPacket, IDisconnectPacket } from 'mqtt-packet';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { collect, connectClient, RawClient, uniqueId } from './helpers/clients.ts';

/** A CONNECT built by hand: any protocol name and level, flags and client id (mqtt-packet refuses some). */
function connectBytes(protocolName: string, level: number, flags = 0x02, id = uniqueId('bad')): Buffer {
  const name = Buffer.from(protocolName);
  const clientId = Buffer.from(id);
  const body = Buffer.concat([
    Buffer.from([0, name.length]),
    name,
    Buffer.from([level, flags, 0, 60]), // level, flags (0x02: clean session), keepalive 60
    Buffer.from(level === 5 ? [0] : []), // v5: empty property list
    Buffer.from([0, clientId.length]),
    clientId,
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

describe('CONNECT and CONNACK (2 workers, defaults)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2 });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('accepts MQTT 3.1 (MQIsdp, level 3), 3.1.1 and 5.0 clients, and each can publish and receive', async () => {
    const clients = await Promise.all([3, 4, 5].map((v) => connectClient(broker.port, { protocolVersion: v as 3 | 4 | 5, protocolId: v === 3 ? 'MQIsdp' : 'MQTT' })));
    const topic = `connect/versions/${uniqueId()}`;
    const inboxes = clients.map((c) => collect(c));
    await Promise.all(clients.map((c) => c.subscribeAsync(topic, { qos: 1 })));
    await clients[0]!.publishAsync(topic, 'from-3.1', { qos: 1 });
    for (const inbox of inboxes) expect((await inbox.next(1))[0]!.payload.toString()).toBe('from-3.1');
    await Promise.all(clients.map((c) => c.endAsync()));
  });

  it('v3.1 over a raw socket gets a v3 CONNACK 0 (accepted)', async () => {
    const raw = await RawClient.connect(broker.port, 3);
    const ack = await raw.handshake({ clientId: uniqueId('v31') });
    expect(ack.returnCode).toBe(0);
    expect(ack.sessionPresent).toBe(false);
    raw.destroy();
  });

  it('an unsupported protocol level gets CONNACK 0x01 and the connection is closed [MQTT-3.1.2-2]', async () => {
    for (const level of [2, 6]) {
      const raw = await RawClient.connect(broker.port, 4);
      raw.write(connectBytes('MQTT', level));
      const ack = await raw.next<IConnackPacket>('connack');
      expect(ack.returnCode).toBe(1);
      expect(await raw.closedWithin(5000)).toBe(true);
    }
  });

  it('a wrong protocol name, or a name that does not match the level, gets CONNACK 0x01 and is closed [MQTT-3.1.2-1]', async () => {
    for (const [name, level] of [['MQTX', 4], ['MQTT', 3], ['MQIsdp', 4]] as const) {
      const raw = await RawClient.connect(broker.port, 4);
      raw.write(connectBytes(name, level));
      const ack = await raw.next<IConnackPacket>('connack');
      expect(ack.returnCode, `${name} level ${level}`).toBe(1);
      expect(await raw.closedWithin(5000)).toBe(true);
    }
  });

  it('a level 5 CONNECT with the 3.1 protocol name gets a v5 CONNACK 0x84 Unsupported Protocol Version and is closed [MQTT-3.1.2-1]', async () => {
    const raw = await RawClient.connect(broker.port, 5);
    raw.write(connectBytes('MQIsdp', 5));
    const ack = await raw.next<IConnackPacket>('connack');
    expect(ack.reasonCode).toBe(0x84);
    expect(await raw.closedWithin(5000)).toBe(true);
  });

  it('a second CONNECT on a connection is a protocol violation that closes it [MQTT-3.1.0-2]', async () => {
    const raw = await RawClient.connect(broker.port, 4);
    const clientId = uniqueId('twice');
    expect((await raw.handshake({ clientId })).returnCode).toBe(0);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 60 });
    expect(await raw.closedWithin(5000)).toBe(true);
    expect(raw.received.filter((p) => p.cmd === 'connack')).toHaveLength(0);
  });

  it('a second CONNECT from a v5 client gets DISCONNECT 0x82 Protocol Error and is closed [MQTT-3.1.0-2]', async () => {
    const raw = await RawClient.connect(broker.port, 5);
    const clientId = uniqueId('twice5');
    expect((await raw.handshake({ clientId })).reasonCode).toBe(0);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId, clean: true, keepalive: 60 });
    const d = await raw.next<IDisconnectPacket>('disconnect');
    expect(d.reasonCode).toBe(0x82);
    expect(await raw.closedWithin(5000)).toBe(true);
  });

  it('a first packet other than CONNECT closes the connection without a CONNACK [MQTT-3.1.0-1]', async () => {
    const firsts: mqttPacket.Packet[] = [
      { cmd: 'pingreq' },
      { cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 0, retain: false, dup: false },
      { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/#', qos: 0 }] },
    ];
    for (const p of firsts) {
      const raw = await RawClient.connect(broker.port, 4);
      raw.send(p);
      expect(await raw.closedWithin(5000), p.cmd).toBe(true);
      expect(raw.received).toHaveLength(0);
    }
  });

  it('v3.1.1: an empty client id with clean session gets a generated id and works [MQTT-3.1.3-6]', async () => {
    const raw = await RawClient.connect(broker.port, 4);
    const ack = await raw.handshake({ clientId: '', clean: true });
    expect(ack.returnCode).toBe(0);
    expect(ack.sessionPresent).toBe(false);
    // The broker names the session; its own 'connected' line shows the generated id.
    const line = await broker.waitForLog((l) => l.msg === 'connected' && typeof l.clientId === 'string' && l.clientId.startsWith('starling-'));
    expect(line.clientId).toMatch(/^starling-[0-9a-f-]{36}$/);
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'connect/empty-id', qos: 0 }] });
    expect((await raw.next('suback')).cmd).toBe('suback');
    raw.send({ cmd: 'publish', topic: 'connect/empty-id', payload: Buffer.from('hi'), qos: 0, retain: false, dup: false });
    expect((await raw.next<mqttPacket.IPublishPacket>('publish')).payload.toString()).toBe('hi');
    raw.destroy();
  });

  it('v3.1.1: an empty client id without clean session gets CONNACK 0x02 and is closed [MQTT-3.1.3-8]', async () => {
    const raw = await RawClient.connect(broker.port, 4);
    raw.write(connectBytes('MQTT', 4, 0x00, ''));
    const ack = await raw.next<IConnackPacket>('connack');
    expect(ack.returnCode).toBe(2);
    expect(ack.sessionPresent).toBe(false);
    expect(await raw.closedWithin(5000)).toBe(true);
  });

  it('v3.1 (MQIsdp): an empty client id gets CONNACK 0x02 even with clean session (3.1 requires 1 to 23 characters)', async () => {
    const raw = await RawClient.connect(broker.port, 3);
    raw.write(connectBytes('MQIsdp', 3, 0x02, ''));
    const ack = await raw.next<IConnackPacket>('connack');
    expect(ack.returnCode).toBe(2);
    expect(await raw.closedWithin(5000)).toBe(true);
  });

  it('v5: an empty client id gets an Assigned Client Identifier, distinct per connection [MQTT-3.2.2-16]', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const raw = await RawClient.connect(broker.port, 5);
      const ack = await raw.handshake({ clientId: '', clean: true });
      expect(ack.reasonCode).toBe(0);
      const assigned = ack.properties?.assignedClientIdentifier;
      expect(assigned).toMatch(/^starling-/);
      ids.push(assigned!);
      raw.destroy();
    }
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('v5: CONNACK announces Receive Maximum, Topic Alias Maximum and the available features; no QoS or size limit by default', async () => {
    const raw = await RawClient.connect(broker.port, 5);
    const ack = await raw.handshake({ clientId: uniqueId('props') });
    expect(ack.reasonCode).toBe(0);
    const p = ack.properties ?? {};
    expect(p.receiveMaximum).toBe(65535);
    expect(p.topicAliasMaximum).toBe(65535);
    expect(p.wildcardSubscriptionAvailable).toBe(true);
    expect(p.subscriptionIdentifiersAvailable).toBe(true);
    expect(p.sharedSubscriptionAvailable).toBe(true);
    expect(p.retainAvailable).toBe(true);
    // Absent means QoS 2 and the protocol's maximum packet size [MQTT-3.2.2-9].
    expect(p.maximumQoS).toBeUndefined();
    expect(p.maximumPacketSize).toBeUndefined();
    expect(p.serverKeepAlive).toBeUndefined();
    expect(p.assignedClientIdentifier).toBeUndefined();
    raw.destroy();
  });
});

describe('CONNACK with configured limits (--mqtt.maximumQoS 1, --limits.maxPacketSize 1024, --keepalive.maxSeconds 60, --limits.receiveMaximum 20)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({
      workers: 2,
      args: ['--mqtt.maximumQoS', '1', '--limits.maxPacketSize', '1024', '--keepalive.maxSeconds', '60', '--limits.receiveMaximum', '20'],
    });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('v5 CONNACK carries Maximum QoS 1, Maximum Packet Size 1024 and the configured Receive Maximum [MQTT-3.2.2-9]', async () => {
    const raw = await RawClient.connect(broker.port, 5);
    const ack = await raw.handshake({ clientId: uniqueId('limits'), keepalive: 30 });
    expect(ack.reasonCode).toBe(0);
    const p = ack.properties ?? {};
    expect(p.maximumQoS).toBe(1);
    expect(p.maximumPacketSize).toBe(1024);
    expect(p.receiveMaximum).toBe(20);
    // Keepalive within the maximum: no Server Keep Alive, the client's value stands [MQTT-3.2.2-22].
    expect(p.serverKeepAlive).toBeUndefined();
    raw.destroy();
  });

  it('v5: a keepalive above the maximum is answered with Server Keep Alive 60 [MQTT-3.2.2-21]', async () => {
    const raw = await RawClient.connect(broker.port, 5);
    const ack = await raw.handshake({ clientId: uniqueId('ka5'), keepalive: 120 });
    expect(ack.reasonCode).toBe(0);
    expect(ack.properties?.serverKeepAlive).toBe(60);
    raw.destroy();
  });

  it('v3.1.1: a keepalive above the maximum gets CONNACK 0x02 and is closed', async () => {
    const raw = await RawClient.connect(broker.port, 4);
    const ack = await raw.handshake({ clientId: uniqueId('ka4'), keepalive: 120 });
    expect(ack.returnCode).toBe(2);
    expect(await raw.closedWithin(5000)).toBe(true);
  });

  it('v3.1.1: a keepalive within the maximum is accepted', async () => {
    const raw = await RawClient.connect(broker.port, 4);
    const ack = await raw.handshake({ clientId: uniqueId('ka4ok'), keepalive: 60 });
    expect(ack.returnCode).toBe(0);
    raw.destroy();
  });
});
