import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { collect, connectClient } from './helpers/clients.ts';

describe('single node with 2 workers', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2 });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('delivers a publish from one client to a subscriber on another connection (v3.1.1 and v5)', async () => {
    const sub = await connectClient(broker.port, { protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync('smoke/+', { qos: 1 });
    const pubs = await Promise.all([0, 1, 2, 3].map(() => connectClient(broker.port)));
    for (const [i, p] of pubs.entries()) await p.publishAsync('smoke/x', `m${i}`, { qos: 1 });
    const msgs = await got.next(4);
    expect(msgs.map((m) => m.payload.toString()).sort()).toEqual(['m0', 'm1', 'm2', 'm3']);
    await Promise.all([sub, ...pubs].map((c) => c.endAsync()));
  });
});
