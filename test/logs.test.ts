// Logs as an operator reads them: JSON lines on stdout, the configured level, context on every line
// (node; module on the main thread; worker and clientId for connections), exactly one line per
// connection end, and nothing per message at info.
import type { IPublishPacket } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess, type LogLine } from './helpers/broker.ts';
import { RawClient, uniqueId } from './helpers/clients.ts';

async function ping(c: RawClient): Promise<void> {
  c.send({ cmd: 'pingreq' });
  await c.next('pingresp');
}

const closedLines = (b: BrokerProcess, clientId: string): LogLine[] => b.logs.filter((l) => l.msg === 'connection closed' && l.clientId === clientId);

describe('logs at info', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, logLevel: 'info' });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('100 messages through the broker add no log line; every line is JSON with its context', async () => {
    const topic = `logs/${uniqueId()}`;
    const sub = await RawClient.connect(broker.port, 4);
    await sub.handshake({ clientId: uniqueId('lsub') });
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    await sub.next('suback');
    const pub = await RawClient.connect(broker.port, 5);
    await pub.handshake({ clientId: uniqueId('lpub') });
    await ping(sub);
    await ping(pub);
    const before = broker.logs.length;

    for (let i = 0; i < 100; i++) {
      const qos = (i % 2) as 0 | 1;
      pub.send({ cmd: 'publish', topic, payload: Buffer.from(`m${i}`), qos, retain: false, dup: false, ...(qos ? { messageId: i + 1 } : {}) } as IPublishPacket);
    }
    for (let i = 0; i < 100; i++) {
      const p = await sub.next<IPublishPacket>('publish');
      if (p.qos === 1) sub.send({ cmd: 'puback', messageId: p.messageId });
    }
    await ping(sub);
    await ping(pub);
    expect(broker.logs.slice(before)).toEqual([]);

    // Clean DISCONNECTs are debug: still nothing at info.
    sub.send({ cmd: 'disconnect' });
    await sub.closed;
    pub.send({ cmd: 'disconnect', reasonCode: 0 });
    await pub.closed;
    await broker.stop();
    const during = broker.logs.slice(before).filter((l) => l.msg !== 'shutting down' && l.msg !== 'starling stopped');
    expect(during).toEqual([]);

    expect(broker.logs.length).toBeGreaterThan(0);
    for (const l of broker.logs) {
      expect(typeof l.time, JSON.stringify(l)).toBe('string'); // parsed as JSON (not a fallback)
      expect(l.level).toBeGreaterThanOrEqual(30);
      expect(l.node).toBeTypeOf('string');
    }
    expect(broker.logs.find((l) => l.msg === 'metrics listening')?.module).toBe('http');
  });
});

describe('logs at debug', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, logLevel: 'debug' });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('exactly one line per connection end, with worker, clientId, reason and initiator', async () => {
    const polite = uniqueId('polite');
    const dropped = uniqueId('dropped');
    const shared = uniqueId('taken');
    const a = await RawClient.connect(broker.port, 4);
    await a.handshake({ clientId: polite });
    const b = await RawClient.connect(broker.port, 4);
    await b.handshake({ clientId: dropped });
    const c1 = await RawClient.connect(broker.port, 5);
    await c1.handshake({ clientId: shared });
    const c2 = await RawClient.connect(broker.port, 5);
    await c2.handshake({ clientId: shared }); // takes the session over from c1

    a.send({ cmd: 'disconnect' });
    await a.closed;
    b.destroy();
    await c1.closed;
    c2.send({ cmd: 'disconnect', reasonCode: 0 });
    await c2.closed;
    await broker.waitForLog((l) => l.msg === 'connection closed' && l.clientId === dropped);
    await broker.waitForLog((l) => l.msg === 'connection closed' && l.clientId === shared && l.reason === 'normal');

    const [pl] = closedLines(broker, polite);
    expect(closedLines(broker, polite)).toHaveLength(1);
    expect(pl).toMatchObject({ reason: 'normal', initiator: 'client', level: 20 });
    expect(closedLines(broker, dropped)).toHaveLength(1);
    expect(closedLines(broker, dropped)[0]).toMatchObject({ reason: 'socket_closed', initiator: 'network', level: 30 });
    const sharedLines = closedLines(broker, shared);
    expect(sharedLines.map((l) => l.reason)).toEqual(['session_taken_over', 'normal']);
    for (const l of [...closedLines(broker, polite), ...closedLines(broker, dropped), ...sharedLines]) {
      expect(l.worker).toBeTypeOf('number');
      expect(l.conn).toBeTypeOf('number');
    }
    // Debug shows what info hides: connects, with the same context.
    expect(broker.logs.find((l) => l.msg === 'connected' && l.clientId === polite)).toMatchObject({ level: 20 });
  });
});
