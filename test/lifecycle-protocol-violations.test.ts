// Issue 3, connection lifecycle: a protocol violation closes that connection with the right v5 reason
// code (0x81 malformed, 0x82 protocol error, 0x93, 0x94, 0x95) [MQTT-4.13.1-1], publishes its will, and
// leaves every other connection untouched.
import type { MqttClient } from 'mqtt';
import type mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { collect, connectClient, RawClient, uniqueId } from './helpers/clients.ts';
import { closedLine, endAll, workerOf } from './helpers/lifecycle.ts';

const MAX_PACKET = 1024;
const RECEIVE_MAXIMUM = 2;
const TOPIC_ALIAS_MAXIMUM = 4;

type Publish = mqttPacket.IPublishPacket;

const publish = (topic: string, extra: Partial<Publish> = {}): Publish => ({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 0, dup: false, retain: false, ...extra }) as Publish;

const violations: Array<{ name: string; reason: string; code: number; send: (raw: RawClient, clientId: string) => void }> = [
  { name: 'PUBLISH with both QoS bits set', reason: 'malformed_packet', code: 0x81, send: (raw) => raw.write(Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01])) },
  { name: 'a Remaining Length of more than 4 bytes', reason: 'malformed_packet', code: 0x81, send: (raw) => raw.write(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])) },
  { name: 'PINGREQ with reserved flags set', reason: 'malformed_packet', code: 0x81, send: (raw) => raw.write(Buffer.from([0xc1, 0x00])) },
  {
    name: 'a second CONNECT [MQTT-3.1.0-2]',
    reason: 'protocol_error',
    code: 0x82,
    send: (raw, clientId) => raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId, clean: true, keepalive: 60 }),
  },
  { name: 'a Topic Alias never set, with an empty topic', reason: 'protocol_error', code: 0x82, send: (raw) => raw.send(publish('', { properties: { topicAlias: 1 } })) },
  { name: 'a PUBLISH carrying a Subscription Identifier', reason: 'protocol_error', code: 0x82, send: (raw) => raw.send(publish('pv/x', { properties: { subscriptionIdentifier: 3 } })) },
  {
    name: `more than Receive Maximum (${RECEIVE_MAXIMUM}) QoS 2 PUBLISHes unacknowledged [MQTT-3.3.4-7]`,
    reason: 'receive_maximum_exceeded',
    code: 0x93,
    send: (raw) => {
      for (let id = 1; id <= RECEIVE_MAXIMUM + 1; id++) raw.send(publish('pv/rm', { qos: 2, messageId: id }));
    },
  },
  { name: 'Topic Alias 0 [MQTT-3.3.2-8]', reason: 'topic_alias_invalid', code: 0x94, send: (raw) => raw.send(publish('pv/alias', { properties: { topicAlias: 0 } })) },
  {
    name: `a Topic Alias above Topic Alias Maximum (${TOPIC_ALIAS_MAXIMUM}) [MQTT-3.2.2-17]`,
    reason: 'topic_alias_invalid',
    code: 0x94,
    send: (raw) => raw.send(publish('pv/alias', { properties: { topicAlias: TOPIC_ALIAS_MAXIMUM + 1 } })),
  },
  {
    name: `a packet above Maximum Packet Size (${MAX_PACKET}) [MQTT-3.2.2-15]`,
    reason: 'packet_too_large',
    code: 0x95,
    send: (raw) => raw.send(publish('pv/big', { payload: Buffer.alloc(MAX_PACKET * 4, 7) })),
  },
];

describe('protocol violations', () => {
  let broker: BrokerProcess;
  /** Bystanders on both workers, each subscribed to everything under pv/. */
  let bystanders: Array<{ client: MqttClient; got: ReturnType<typeof collect> }>;

  beforeAll(async () => {
    broker = await startBroker({
      workers: 2,
      args: [
        '--timeouts.connectMs', '1000',
        '--limits.maxPacketSize', String(MAX_PACKET),
        '--limits.receiveMaximum', String(RECEIVE_MAXIMUM),
        '--limits.topicAliasMaximum', String(TOPIC_ALIAS_MAXIMUM),
      ],
    });
    bystanders = [];
    for (const protocolVersion of [5, 4] as const) {
      const client = await connectClient(broker.port, { protocolVersion, keepalive: 30 });
      const got = collect(client);
      await client.subscribeAsync('pvwill/#', { qos: 1 });
      await client.subscribeAsync('pvchat/#', { qos: 1 });
      bystanders.push({ client, got });
    }
    const workers = await Promise.all(bystanders.map((b) => workerOf(broker, b.client.options.clientId!)));
    expect(new Set(workers).size).toBe(2); // one bystander on each worker
  });
  afterAll(async () => {
    await endAll(bystanders.map((b) => b.client));
    await broker.stop();
  });

  for (const v of violations) {
    it(`${v.name}: v5 DISCONNECT 0x${v.code.toString(16)} (${v.reason}), will published, other connections untouched`, async () => {
      const raw = await RawClient.connect(broker.port, 5);
      const clientId = uniqueId('violator');
      const willTopic = `pvwill/${clientId}`;
      const ack = await raw.handshake({ clientId, will: { topic: willTopic, payload: Buffer.from(v.reason), qos: 1, retain: false } as mqttPacket.IConnectPacket['will'] });
      expect(ack.reasonCode).toBe(0);
      v.send(raw, clientId);
      const d = await raw.next<mqttPacket.IDisconnectPacket>('disconnect', 10_000);
      expect(d.reasonCode).toBe(v.code);
      expect(await raw.closedWithin(5000)).toBe(true);
      expect((await closedLine(broker, { clientId })).reason).toBe(v.reason);
      // Every bystander gets the will, and nothing else happened to them: still connected, and they
      // still reach each other across the workers.
      for (const b of bystanders) {
        const [will] = await b.got.next(1, 10_000);
        expect(will!.topic).toBe(willTopic);
        expect(will!.payload.toString()).toBe(v.reason);
        expect(b.client.connected).toBe(true);
      }
      const chat = `pvchat/${clientId}`;
      await bystanders[0]!.client.publishAsync(chat, 'still here', { qos: 1 });
      for (const b of bystanders) expect((await b.got.next(1, 10_000))[0]!.topic).toBe(chat);
    });
  }

  it('v3.1.1: a violation closes the connection without a DISCONNECT (none exists in 3.1.1) and publishes the will', async () => {
    const raw = await RawClient.connect(broker.port, 4);
    const clientId = uniqueId('violator3');
    await raw.handshake({ clientId, will: { topic: `pvwill/${clientId}`, payload: Buffer.from('v3'), qos: 1, retain: false } as mqttPacket.IConnectPacket['will'] });
    raw.write(Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]));
    expect(await raw.closedWithin(5000)).toBe(true);
    expect(raw.received.filter((p) => p.cmd === 'disconnect')).toEqual([]);
    expect((await closedLine(broker, { clientId })).reason).toBe('malformed_packet');
    for (const b of bystanders) expect((await b.got.next(1, 10_000))[0]!.payload.toString()).toBe('v3');
  });

  it('a first packet other than CONNECT closes the socket, without CONNACK or DISCONNECT [MQTT-3.1.0-1]', async () => {
    const raw = await RawClient.connect(broker.port, 5);
    raw.send({ cmd: 'pingreq' });
    expect(await raw.closedWithin(5000)).toBe(true);
    expect(raw.received).toEqual([]);
  });
});
