// Publish/subscribe across broker processes sharing a real redis-server: every matching subscriber on
// every other node gets each message exactly once per subscription, in order per publisher and topic,
// at QoS 0, 1 and 2; a node without matching subscribers is sent nothing.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { uniqueId } from './helpers/clients.ts';
import { endClients, fatalLines, keepLogsOnFailure, nodeClient, metric, RedisServer, startCluster, type Cluster } from './helpers/cluster.ts';
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

describe('cluster publish/subscribe (3 nodes)', () => {
  for (const qos of [0, 1, 2] as const) {
    it(`QoS ${qos}: a publish on A reaches every subscriber on B and C exactly once, in order; A is sent nothing`, async () => {
      const topic = `cl/pubsub/${uniqueId()}`;
      const fence = `${topic}/fence`;
      const subs = [await client('B'), await client('B', 4), await client('C'), await client('C', 4)];
      const recs = subs.map((s) => record(s));
      for (const s of subs) await s.subscribeAsync([topic, fence], { qos: 2 });
      const inA = await metric(cluster.node('A'), 'starling_cluster_messages_in_total');
      const inB = await metric(cluster.node('B'), 'starling_cluster_messages_in_total');

      const pub = await client('A');
      const N = 200;
      const sends: Array<Promise<unknown>> = [];
      for (let i = 0; i < N; i++) sends.push(pub.publishAsync(topic, `m${i}`, { qos }));
      await Promise.all(sends);
      // The fence goes on the same path at QoS 2: in order behind everything above.
      await pub.publishAsync(fence, 'end', { qos: 2 });

      for (const rec of recs) {
        const got = await rec.until(onTopic(fence), 20_000);
        const payloads = got.map((r) => r.payload.toString());
        if (qos === 0) {
          // At most once, in order: nothing duplicated or reordered (loopback drops nothing in practice).
          expect(new Set(payloads).size).toBe(payloads.length);
          expect(payloads).toEqual([...payloads].sort((a, b) => Number(a.slice(1)) - Number(b.slice(1))));
          expect(payloads.length).toBe(N);
        } else {
          expect(payloads).toEqual(Array.from({ length: N }, (_, i) => `m${i}`));
        }
        for (const r of got) expect(r.packet.qos).toBe(qos);
      }
      // One delivery to B per message (both B subscribers share it), and none to A, which has no subscriber.
      expect(await metric(cluster.node('B'), 'starling_cluster_messages_in_total')).toBe(inB + N + 1);
      expect(await metric(cluster.node('A'), 'starling_cluster_messages_in_total')).toBe(inA);
    });
  }

  it('a node is sent only the topics it has subscribers for', async () => {
    const base = `cl/only/${uniqueId()}`;
    const onB = await client('B');
    const onC = await client('C');
    const recB = record(onB);
    const recC = record(onC);
    await onB.subscribeAsync(`${base}/b/#`, { qos: 1 });
    await onC.subscribeAsync(`${base}/c/#`, { qos: 1 });
    const inB = await metric(cluster.node('B'), 'starling_cluster_messages_in_total');
    const inC = await metric(cluster.node('C'), 'starling_cluster_messages_in_total');
    const pub = await client('A');
    for (let i = 0; i < 50; i++) await pub.publishAsync(`${base}/b/x`, `b${i}`, { qos: 1 });
    for (let i = 0; i < 20; i++) await pub.publishAsync(`${base}/c/x`, `c${i}`, { qos: 1 });
    await pub.publishAsync(`${base}/nobody`, 'lost', { qos: 1 });
    await pub.publishAsync(`${base}/b/end`, 'end', { qos: 1 });
    await pub.publishAsync(`${base}/c/end`, 'end', { qos: 1 });
    expect((await recB.until(onTopic(`${base}/b/end`))).map((r) => r.payload.toString())).toEqual(Array.from({ length: 50 }, (_, i) => `b${i}`));
    expect((await recC.until(onTopic(`${base}/c/end`))).map((r) => r.payload.toString())).toEqual(Array.from({ length: 20 }, (_, i) => `c${i}`));
    expect(await metric(cluster.node('B'), 'starling_cluster_messages_in_total')).toBe(inB + 51);
    expect(await metric(cluster.node('C'), 'starling_cluster_messages_in_total')).toBe(inC + 21);
  });

  it('publishers on several nodes: each one in order at every subscriber, local and remote', async () => {
    const topic = `cl/multi/${uniqueId()}`;
    const subs = [await client('A'), await client('B'), await client('C')];
    const recs = subs.map((s) => record(s));
    for (const s of subs) await s.subscribeAsync(`${topic}/#`, { qos: 1 });
    const pubs = [await client('A'), await client('B'), await client('C')];
    const N = 100;
    await Promise.all(
      pubs.map(async (p, k) => {
        const sends: Array<Promise<unknown>> = [];
        for (let i = 0; i < N; i++) sends.push(p.publishAsync(`${topic}/p${k}`, `${k}:${i}`, { qos: 1 }));
        await Promise.all(sends);
      }),
    );
    for (const p of pubs) await p.publishAsync(`${topic}/fence`, 'f', { qos: 1 });
    for (const rec of recs) {
      let fences = 0;
      const got = await rec.until((r) => r.topic === `${topic}/fence` && ++fences === 3, 20_000);
      const rest = got.filter((r) => r.topic !== `${topic}/fence`);
      for (let k = 0; k < 3; k++) {
        expect(rest.filter((r) => r.topic === `${topic}/p${k}`).map((r) => r.payload.toString())).toEqual(Array.from({ length: N }, (_, i) => `${k}:${i}`));
      }
    }
  });

  it('unsubscribing on B stops deliveries to B cluster-wide', async () => {
    const topic = `cl/unsub/${uniqueId()}`;
    const sub = await client('B');
    const rec = record(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    await sub.subscribeAsync(`${topic}/fence`, { qos: 1 });
    const pub = await client('A');
    await pub.publishAsync(topic, 'before', { qos: 1 });
    // Delivered before the UNSUBSCRIBE (one still on its way when it lands may rightly be dropped).
    await rec.until((r) => r.payload.toString() === 'before');
    await sub.unsubscribeAsync(topic);
    const inB = await metric(cluster.node('B'), 'starling_cluster_messages_in_total');
    await pub.publishAsync(topic, 'after', { qos: 1 });
    await pub.publishAsync(`${topic}/fence`, 'f', { qos: 1 });
    expect((await rec.until(onTopic(`${topic}/fence`))).map((r) => r.payload.toString())).toEqual([]);
    // Only the fence crossed: the unsubscribed topic's route is gone from A's replica.
    expect(await metric(cluster.node('B'), 'starling_cluster_messages_in_total')).toBe(inB + 1);
  });
});
