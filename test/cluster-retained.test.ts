// Retained messages are cluster-wide and never stale: once a retained QoS 1 publish on one node is
// acknowledged, a subscription made on another node right after receives exactly that message.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { uniqueId, type Received } from './helpers/clients.ts';
import { endClients, fatalLines, keepLogsOnFailure, nodeClient, RedisServer, startCluster, type Cluster } from './helpers/cluster.ts';
import { onTopic, record } from './helpers/receive.ts';

let redis: RedisServer;
let cluster: Cluster;
const clients: MqttClient[] = [];

async function client(nodeId: string, protocolVersion: 4 | 5 = 5): Promise<MqttClient> {
  const c = await nodeClient(cluster.node(nodeId), { protocolVersion, clientId: uniqueId(nodeId) });
  clients.push(c);
  return c;
}

keepLogsOnFailure(() => cluster?.all ?? []);
beforeAll(async () => {
  redis = await RedisServer.start();
  cluster = await startCluster(redis, ['A', 'B', 'C']);
}, 60_000);
afterEach(async () => {
  await endClients(clients.splice(0));
});
afterAll(async () => {
  await cluster?.stop();
  for (const n of cluster?.nodes.values() ?? []) expect(fatalLines(n)).toEqual([]);
  await redis?.kill();
}, 30_000);

/** The next message the client receives (the `mqtt` client emits each one once). */
function nextMessage(c: MqttClient, timeoutMs = 5000): Promise<Received> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.off('message', on);
      reject(new Error(`no message within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (topic: string, payload: Buffer, packet: Received['packet']) => {
      clearTimeout(timer);
      c.off('message', on);
      resolve({ topic, payload, packet });
    };
    c.on('message', on);
  });
}

describe('cluster retained messages', () => {
  it('1,000 rounds: retained publish acknowledged on A, then a subscription on B gets exactly that payload', async () => {
    const topic = `cl/retained/${uniqueId()}`;
    const pub = await client('A');
    const sub = await client('B');
    let total = 0;
    sub.on('message', () => total++);
    const ROUNDS = 1000;
    const started = Date.now();
    for (let i = 0; i < ROUNDS; i++) {
      const payload = `v${i}-${Math.random().toString(36).slice(2, 8)}`;
      await pub.publishAsync(topic, payload, { qos: 1, retain: true });
      const got = nextMessage(sub);
      await sub.subscribeAsync(topic, { qos: 1 });
      const m = await got;
      if (m.payload.toString() !== payload || !m.packet.retain) {
        throw new Error(`round ${i}: expected retained ${payload}, got ${m.payload.toString()} (retain ${m.packet.retain})`);
      }
      await sub.unsubscribeAsync(topic);
    }
    expect(total).toBe(ROUNDS);
    // Not a performance assertion: a guard that the loop stayed within the test's budget.
    expect(Date.now() - started).toBeLessThan(90_000);
  }, 120_000);

  it('replaced on B, deleted on C: every node answers with the current state', async () => {
    const topic = `cl/retained/state/${uniqueId()}`;
    const a = await client('A');
    const b = await client('B');
    const c = await client('C');
    await a.publishAsync(topic, 'from-A', { qos: 1, retain: true });
    await b.publishAsync(topic, 'from-B', { qos: 1, retain: true });
    for (const node of ['A', 'B', 'C']) {
      const s = await client(node);
      const got = nextMessage(s);
      await s.subscribeAsync(topic, { qos: 1 });
      expect((await got).payload.toString()).toBe('from-B');
    }
    // An empty retained payload deletes it everywhere [MQTT-3.3.1-6].
    await c.publishAsync(topic, '', { qos: 1, retain: true });
    const fence = `${topic}-fence`;
    await a.publishAsync(fence, 'f', { qos: 1, retain: true });
    for (const node of ['A', 'B', 'C']) {
      const s = await client(node);
      const rec = record(s);
      await s.subscribeAsync(topic, { qos: 1 });
      // Retained messages of one SUBSCRIBE-per-filter are sent in order: the second filter's come after.
      await s.subscribeAsync(fence, { qos: 1 });
      expect(await rec.until(onTopic(fence))).toEqual([]);
    }
  });

  it('a wildcard subscription on C gets the retained messages published on A and B', async () => {
    const base = `cl/retained/wild/${uniqueId()}`;
    const a = await client('A');
    const b = await client('B', 4);
    for (let i = 0; i < 10; i++) await a.publishAsync(`${base}/a/${i}`, `a${i}`, { qos: 1, retain: true });
    for (let i = 0; i < 10; i++) await b.publishAsync(`${base}/b/${i}`, `b${i}`, { qos: 1, retain: true });
    const c = await client('C');
    const rec = record(c);
    await c.subscribeAsync(`${base}/#`, { qos: 1 });
    await c.subscribeAsync(`${base}-fence`, { qos: 1 });
    await a.publishAsync(`${base}-fence`, 'f', { qos: 1 });
    const got = await rec.until(onTopic(`${base}-fence`));
    expect(got.map((r) => r.payload.toString()).sort()).toEqual([...Array.from({ length: 10 }, (_, i) => `a${i}`), ...Array.from({ length: 10 }, (_, i) => `b${i}`)].sort());
    for (const r of got) expect(r.packet.retain).toBe(true);
  });
});
