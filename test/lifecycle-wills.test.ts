// Issue 3, connection lifecycle: wills. Published on every abnormal end, not after DISCONNECT 0x00,
// after v5 DISCONNECT 0x04; Will Delay Interval; QoS, retain and properties; at most once.
// (Keepalive timeout: test/lifecycle-keepalive.test.ts; worker crash: test/lifecycle-worker-crash.test.ts.)
import type mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, collect, RawClient, uniqueId } from './helpers/clients.ts';
import { closedLine, endAll, subscriber } from './helpers/lifecycle.ts';

type Will = NonNullable<mqttPacket.IConnectPacket['will']>;

describe('wills', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--timeouts.connectMs', '1000'] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  /** A raw client connected with a will on `topic`. */
  async function withWill(version: 4 | 5, topic: string, payload: string, extra: { will?: Partial<Will>; connect?: Partial<mqttPacket.IConnectPacket> } = {}) {
    const raw = await RawClient.connect(broker.port, version);
    const clientId = extra.connect?.clientId ?? uniqueId('will');
    const will = { topic, payload: Buffer.from(payload), qos: 1, retain: false, ...extra.will } as Will;
    const ack = await raw.handshake({ keepalive: 60, ...extra.connect, clientId, will });
    expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(0);
    return { raw, clientId };
  }

  /**
   * Proves that no will came from what happened before: a second client with a will on `${base}/marker`
   * is reset now; its will is published through the same path, so any earlier will would arrive first.
   */
  async function expectOnlyMarkerNext(base: string, got: ReturnType<typeof collect>): Promise<void> {
    const marker = await withWill(4, `${base}/marker`, 'marker');
    marker.raw.socket.resetAndDestroy();
    const [first] = await got.next(1, 10_000);
    expect(first!.topic).toBe(`${base}/marker`);
  }

  it('is published when the socket closes without DISCONNECT (socket_closed) [MQTT-3.1.2-8]', async () => {
    const base = `will/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`);
    const c = await withWill(4, `${base}/a`, 'closed');
    c.raw.socket.end();
    const [will] = await sub.got.next(1, 10_000);
    expect(will!.payload.toString()).toBe('closed');
    expect((await closedLine(broker, { clientId: c.clientId })).reason).toBe('socket_closed');
    await endAll([sub.client]);
  });

  it('is published when the connection is reset (RST: socket_error)', async () => {
    const base = `will/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`);
    const c = await withWill(5, `${base}/a`, 'reset');
    c.raw.socket.resetAndDestroy();
    const [will] = await sub.got.next(1, 10_000);
    expect(will!.payload.toString()).toBe('reset');
    expect((await closedLine(broker, { clientId: c.clientId })).reason).toBe('socket_error');
    await endAll([sub.client]);
  });

  it('is published on a protocol violation: a second CONNECT (v5 DISCONNECT 0x82) [MQTT-3.1.0-2]', async () => {
    const base = `will/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`);
    const c = await withWill(5, `${base}/a`, 'second-connect');
    c.raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: c.clientId, clean: true, keepalive: 60 });
    expect((await c.raw.next<mqttPacket.IDisconnectPacket>('disconnect')).reasonCode).toBe(0x82);
    expect(await c.raw.closedWithin(5000)).toBe(true);
    const [will] = await sub.got.next(1, 10_000);
    expect(will!.payload.toString()).toBe('second-connect');
    expect((await closedLine(broker, { clientId: c.clientId })).reason).toBe('protocol_error');
    await endAll([sub.client]);
  });

  it('is published when the server closes for malformed bytes (v5 DISCONNECT 0x81) [MQTT-4.13.1-1]', async () => {
    const base = `will/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`);
    const c = await withWill(5, `${base}/a`, 'malformed');
    c.raw.write(Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01])); // PUBLISH with both QoS bits set
    expect((await c.raw.next<mqttPacket.IDisconnectPacket>('disconnect')).reasonCode).toBe(0x81);
    const [will] = await sub.got.next(1, 10_000);
    expect(will!.payload.toString()).toBe('malformed');
    expect((await closedLine(broker, { clientId: c.clientId })).reason).toBe('malformed_packet');
    await endAll([sub.client]);
  });

  for (const version of [4, 5] as const) {
    it(`is not published after DISCONNECT${version === 5 ? ' 0x00' : ''} (v${version === 5 ? '5' : '3.1.1'}) [MQTT-3.1.2-10] [MQTT-3.14.4-3]`, async () => {
      const base = `will/${uniqueId()}`;
      const sub = await subscriber(broker.port, `${base}/#`);
      const c = await withWill(version, `${base}/a`, 'must-not-arrive');
      c.raw.send(version === 5 ? ({ cmd: 'disconnect', reasonCode: 0 } as mqttPacket.IDisconnectPacket) : { cmd: 'disconnect' });
      await c.raw.closed;
      expect((await closedLine(broker, { clientId: c.clientId })).reason).toBe('normal');
      await expectOnlyMarkerNext(base, sub.got);
      await endAll([sub.client]);
    });
  }

  it('is published after v5 DISCONNECT 0x04 Disconnect with Will Message, once (normal_with_will)', async () => {
    const base = `will/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`);
    const c = await withWill(5, `${base}/a`, 'asked-for');
    c.raw.send({ cmd: 'disconnect', reasonCode: 0x04 } as mqttPacket.IDisconnectPacket);
    // The client also resets its socket: one end, one will.
    c.raw.socket.resetAndDestroy();
    const [will] = await sub.got.next(1, 10_000);
    expect(will!.payload.toString()).toBe('asked-for');
    expect((await closedLine(broker, { clientId: c.clientId })).reason).toBe('normal_with_will');
    await expectOnlyMarkerNext(base, sub.got); // at most once: nothing between the will and the marker
    await endAll([sub.client]);
  });

  it('waits for the Will Delay Interval before publishing [MQTT-3.1.3-9]', async () => {
    const base = `will/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`);
    const c = await withWill(5, `${base}/a`, 'delayed', { will: { properties: { willDelayInterval: 2 } }, connect: { properties: { sessionExpiryInterval: 60 } } });
    c.raw.socket.resetAndDestroy();
    const lost = Date.now();
    const [will] = await sub.got.next(1, 10_000);
    expect(will!.payload.toString()).toBe('delayed');
    expect(Date.now() - lost).toBeGreaterThanOrEqual(1900);
    await endAll([sub.client]);
  });

  it('publishes when the session ends if that comes first: min(Will Delay, Session Expiry) [MQTT-3.1.3-9]', async () => {
    const base = `will/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`);
    const c = await withWill(5, `${base}/a`, 'session-ended', { will: { properties: { willDelayInterval: 3600 } }, connect: { properties: { sessionExpiryInterval: 1 } } });
    c.raw.socket.resetAndDestroy();
    const lost = Date.now();
    const [will] = await sub.got.next(1, 10_000); // after ~1 s, not 3600 s
    expect(will!.payload.toString()).toBe('session-ended');
    expect(Date.now() - lost).toBeGreaterThanOrEqual(900);
    await endAll([sub.client]);
  });

  it('is cancelled when the client reconnects with the same id before the Will Delay passes [MQTT-3.1.3-9]', async () => {
    const base = `will/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`);
    const delayed = { will: { properties: { willDelayInterval: 2 } }, connect: { properties: { sessionExpiryInterval: 60 } } };
    const c = await withWill(5, `${base}/cancelled`, 'must-not-arrive', delayed);
    c.raw.socket.resetAndDestroy();
    await closedLine(broker, { clientId: c.clientId });
    const again = await RawClient.connect(broker.port, 5);
    const ack = await again.handshake({ clientId: c.clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
    expect(ack.reasonCode).toBe(0);
    // A control client lost after the first one, with the same delay: once its will arrives, the first
    // one's delay has passed too.
    const control = await withWill(5, `${base}/control`, 'control', delayed);
    control.raw.socket.resetAndDestroy();
    const [first] = await sub.got.next(1, 10_000);
    expect(first!.topic).toBe(`${base}/control`);
    again.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } } as mqttPacket.IDisconnectPacket);
    await again.closed;
    await endAll([sub.client]);
  });

  it('honours Will QoS, the retain flag (served to a later subscriber) and v5 properties [MQTT-3.1.2-15] [MQTT-3.1.3-10]', async () => {
    const base = `will/${uniqueId()}`;
    const topic = `${base}/status`;
    const live = await connectClient(broker.port, { protocolVersion: 5 });
    const liveGot = collect(live);
    await live.subscribeAsync(topic, { qos: 2 });
    const c = await withWill(5, topic, '{"online":false}', {
      will: {
        qos: 2,
        retain: true,
        properties: { contentType: 'application/json', payloadFormatIndicator: true, userProperties: { first: '1', second: '2' }, responseTopic: `${base}/reply`, correlationData: Buffer.from('corr') },
      },
    });
    c.raw.socket.resetAndDestroy();
    const [will] = await liveGot.next(1, 10_000);
    expect(will!.payload.toString()).toBe('{"online":false}');
    expect(will!.packet.qos).toBe(2);
    const props = will!.packet.properties!;
    expect(props.contentType).toBe('application/json');
    expect(props.payloadFormatIndicator).toBe(true);
    expect(props.responseTopic).toBe(`${base}/reply`);
    expect(Buffer.from(props.correlationData!).toString()).toBe('corr');
    expect(Object.entries(props.userProperties!)).toEqual([['first', '1'], ['second', '2']]); // order kept
    // Retained: a subscriber arriving later gets it, with RETAIN 1 and the QoS it asked for.
    const later = await connectClient(broker.port, { protocolVersion: 5 });
    const laterGot = collect(later);
    await later.subscribeAsync(topic, { qos: 1 });
    const [retained] = await laterGot.next(1, 10_000);
    expect(retained!.payload.toString()).toBe('{"online":false}');
    expect(retained!.packet.retain).toBe(true);
    expect(retained!.packet.qos).toBe(1);
    expect(retained!.packet.properties?.contentType).toBe('application/json');
    await live.publishAsync(topic, '', { qos: 1, retain: true }); // clear the retained will
    await endAll([live, later]);
  });

  it('delivers a QoS 0 will at QoS 0 and a non-retained will is not retained [MQTT-3.1.2-14]', async () => {
    const base = `will/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`, { qos: 2 });
    const c = await withWill(4, `${base}/a`, 'q0', { will: { qos: 0, retain: false } });
    c.raw.socket.resetAndDestroy();
    const [will] = await sub.got.next(1, 10_000);
    expect(will!.packet.qos).toBe(0);
    const later = await connectClient(broker.port, { protocolVersion: 5 });
    const laterGot = collect(later);
    await later.subscribeAsync(`${base}/a`, { qos: 1 });
    // Nothing retained: the only message this subscriber sees is a live one published now.
    await sub.client.publishAsync(`${base}/a`, 'live', { qos: 1 });
    const [first] = await laterGot.next(1, 10_000);
    expect(first!.payload.toString()).toBe('live');
    await endAll([sub.client, later]);
  });

  it('is published once when a session is taken over (v5 DISCONNECT 0x8E), not again when the new connection ends normally', async () => {
    const base = `will/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`);
    const c = await withWill(5, `${base}/old`, 'taken-over');
    const newer = await RawClient.connect(broker.port, 5);
    await newer.handshake({ clientId: c.clientId });
    expect((await c.raw.next<mqttPacket.IDisconnectPacket>('disconnect')).reasonCode).toBe(0x8e);
    const [will] = await sub.got.next(1, 10_000);
    expect(will!.payload.toString()).toBe('taken-over');
    newer.send({ cmd: 'disconnect', reasonCode: 0 } as mqttPacket.IDisconnectPacket);
    await newer.closed;
    await expectOnlyMarkerNext(base, sub.got);
    await endAll([sub.client]);
  });
});
