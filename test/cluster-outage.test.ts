// Redis outages are survived: with redis-server killed, each node keeps serving its own clients (local
// publish/subscribe), reports the state in metrics and once in its logs, never crashes, and does not
// acknowledge as success a QoS 1 publish that another node's subscriber cannot get (v5 PUBACK 0x80).
// With redis-server back on the same port (empty), the cluster converges: routes registered again,
// cross-node publish/subscribe works, subscriptions made during the outage included.
import type { IPubackPacket, IPublishPacket } from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerProcess } from './helpers/broker.ts';
import { RawClient, uniqueId } from './helpers/clients.ts';
import { endClients, fatalLines, keepLogsOnFailure, metric, nodeClient, RedisServer, startCluster, waitForMetric, type Cluster } from './helpers/cluster.ts';
import { onTopic, record } from './helpers/receive.ts';

let redis: RedisServer;
let cluster: Cluster;
const clients: MqttClient[] = [];
const raws: RawClient[] = [];

keepLogsOnFailure(() => cluster?.all ?? []);
beforeAll(async () => {
  redis = await RedisServer.start();
  cluster = await startCluster(redis, ['A', 'B']);
}, 60_000);
afterAll(async () => {
  await endClients(clients.splice(0));
  for (const r of raws.splice(0)) r.destroy();
  await cluster?.stop();
  await redis?.kill();
}, 30_000);

function publish(topic: string, payload: string, qos: 0 | 1 | 2, messageId?: number): IPublishPacket {
  return { cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, ...(qos > 0 ? { messageId } : {}) } as IPublishPacket;
}

async function rawV5(node: BrokerProcess): Promise<RawClient> {
  const c = await RawClient.connect(node.port, 5);
  raws.push(c);
  const ack = await c.handshake({ clientId: uniqueId('raw') });
  expect(ack.reasonCode).toBe(0);
  return c;
}

function logsMatching(node: BrokerProcess, re: RegExp): number {
  return node.logs.filter((l) => re.test(l.msg)).length;
}

describe('cluster: Redis outage and recovery (2 nodes)', () => {
  it('serves local clients through an outage, refuses to acknowledge what cannot reach another node, and converges when Redis is back', async () => {
    const [A, B] = [cluster.node('A'), cluster.node('B')];
    const base = `cl/outage/${uniqueId()}`;
    // Before: a local pair on A, a subscriber on B, publishers on A (mqtt package and raw v5).
    const subA = await nodeClient(A);
    const subB = await nodeClient(B);
    clients.push(subA, subB);
    const recA = record(subA);
    const recB = record(subB);
    await subA.subscribeAsync([`${base}/local`, `${base}/local-fence`], { qos: 1 });
    await subB.subscribeAsync(`${base}/remote`, { qos: 1 });
    const pubA = await nodeClient(A);
    clients.push(pubA);
    const rawA = await rawV5(A);
    await pubA.publishAsync(`${base}/remote`, 'before', { qos: 1 });
    expect((await recB.until(onTopic(`${base}/remote`))).length).toBe(0);

    await redis.kill();
    await Promise.all([A, B].map((n) => waitForMetric(n, 'starling_redis_connected', (v) => v === 0)));

    // Local publish/subscribe keeps working, at every QoS, many times over.
    for (let i = 0; i < 50; i++) await pubA.publishAsync(`${base}/local`, `l${i}`, { qos: (i % 3) as 0 | 1 | 2 });
    await pubA.publishAsync(`${base}/local-fence`, 'f', { qos: 1 });
    expect((await recA.until(onTopic(`${base}/local-fence`))).map((r) => r.payload.toString())).toEqual(Array.from({ length: 50 }, (_, i) => `l${i}`));

    // QoS 1 to a topic B subscribes to: not routed, so not acknowledged as success (v5 0x80); QoS 2: PUBREC 0x80.
    for (let i = 1; i <= 20; i++) {
      rawA.send(publish(`${base}/remote`, `r${i}`, 1, i));
      const ack = await rawA.next<IPubackPacket>('puback', 5000, (p) => p.messageId === i);
      expect(ack.reasonCode).toBeGreaterThanOrEqual(0x80);
    }
    rawA.send(publish(`${base}/remote`, 'q2', 2, 100));
    expect((await rawA.next<IPubackPacket>('pubrec', 5000, (p) => p.messageId === 100)).reasonCode).toBeGreaterThanOrEqual(0x80);
    // QoS 0 to it: dropped silently, counted as a Redis error, not logged per message.
    for (let i = 0; i < 20; i++) rawA.send(publish(`${base}/remote`, `z${i}`, 0));
    rawA.send({ cmd: 'pingreq' });
    await rawA.next('pingresp');
    // A new connection cannot claim its session cluster-wide: refused at once with 0x88 Server unavailable.
    const late = await RawClient.connect(A.port, 5);
    raws.push(late);
    expect((await late.handshake({ clientId: uniqueId('late') })).reasonCode).toBe(0x88);
    // A subscription made during the outage is acknowledged (the route is registered when Redis is back).
    await subB.subscribeAsync(`${base}/during`, { qos: 1 });

    const text = await metric(A, 'starling_redis_errors_total');
    expect(text).toBeGreaterThan(0);
    // One line per state change, whatever the traffic.
    expect(logsMatching(A, /connection lost/)).toBe(1);
    expect(logsMatching(B, /connection lost/)).toBe(1);
    for (const n of [A, B]) {
      expect(n.child.exitCode).toBeNull();
      expect(fatalLines(n)).toEqual([]);
    }

    // Redis back, empty, on the same port: both nodes reconnect and register their routes again.
    await redis.launch();
    await Promise.all([A, B].map((n) => n.waitForLog((l) => l.msg === 'redis router: registered again', 20_000)));
    await Promise.all([A, B].map((n) => waitForMetric(n, 'starling_redis_connected', (v) => v === 1)));
    await Promise.all([A, B].map((n) => waitForMetric(n, 'starling_cluster_nodes', (v) => v === 2)));
    expect(logsMatching(A, /connection restored/)).toBe(1);
    expect(await metric(A, 'starling_redis_reconnects_total')).toBeGreaterThanOrEqual(1);

    const again = await RawClient.connect(A.port, 5);
    raws.push(again);
    expect((await again.handshake({ clientId: uniqueId('again') })).reasonCode).toBe(0);
    // Cross-node publish/subscribe again, to a route from before the outage and one made during it.
    rawA.send(publish(`${base}/remote`, 'after', 1, 200));
    expect((await rawA.next<IPubackPacket>('puback', 5000, (p) => p.messageId === 200)).reasonCode ?? 0).toBe(0);
    await pubA.publishAsync(`${base}/during`, 'during-sub', { qos: 1 });
    await pubA.publishAsync(`${base}/remote`, 'fence', { qos: 1 });
    const got = await recB.until((r) => r.payload.toString() === 'fence', 10_000);
    expect(got.map((r) => r.payload.toString())).toEqual(['after', 'during-sub']);
    for (const n of [A, B]) {
      expect(n.child.exitCode).toBeNull();
      expect(fatalLines(n)).toEqual([]);
    }
  }, 90_000);
});
