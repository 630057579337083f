// Membership: node ids from configuration (--nodeId, else POD_NAME, else HOSTNAME), heartbeats (a node
// that stops answering is declared dead, and registers again when it comes back), graceful leave, and
// a node restarting under the same id cleaning up after its previous life (its wills published once,
// its stale routes gone, its sessions resumable).
import type { IConnackPacket, IPublishPacket } from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { RawClient, uniqueId, type Received } from './helpers/clients.ts';
import { endClients, keepLogsOnFailure, FAST_MEMBERSHIP, fatalLines, freshPrefix, metric, nodeClient, RedisServer, startCluster, waitForMetric, waitForNodes, type Cluster } from './helpers/cluster.ts';
import { onTopic, record } from './helpers/receive.ts';

let redis: RedisServer;
const clusters: Cluster[] = [];
const extra: BrokerProcess[] = [];
const clients: MqttClient[] = [];
const raws: RawClient[] = [];

/** This test's processes, kept after it (stopped) for the failure log dump. */
const ended: BrokerProcess[] = [];
keepLogsOnFailure(() => [...ended, ...clusters.flatMap((c) => c.all), ...extra]);
beforeEach(() => void (ended.length = 0));
beforeAll(async () => {
  redis = await RedisServer.start();
});
afterEach(async () => {
  await endClients(clients.splice(0));
  for (const r of raws.splice(0)) r.destroy();
  for (const n of extra.splice(0)) {
    ended.push(n);
    n.child.kill('SIGCONT');
    await n.stop();
  }
  for (const c of clusters.splice(0)) {
    ended.push(...c.all);
    for (const n of c.nodes.values()) n.child.kill('SIGCONT');
    await c.stop();
    for (const n of c.nodes.values()) expect(fatalLines(n)).toEqual([]);
  }
}, 30_000);
afterAll(async () => {
  await redis?.kill();
});

async function cluster(ids: string[]): Promise<Cluster> {
  const c = await startCluster(redis, ids);
  clusters.push(c);
  return c;
}

async function raw(port: number, version: 4 | 5, connect: Parameters<RawClient['handshake']>[0]): Promise<{ c: RawClient; ack: IConnackPacket }> {
  const c = await RawClient.connect(port, version);
  raws.push(c);
  const ack = await c.handshake(connect);
  expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(0);
  return { c, ack };
}

async function client(node: BrokerProcess): Promise<MqttClient> {
  const c = await nodeClient(node);
  clients.push(c);
  return c;
}

/** A node of an existing cluster (key prefix) started without --nodeId: the id comes from the environment. */
async function nodeFromEnv(keyPrefix: string, env: Record<string, string>): Promise<BrokerProcess> {
  const node = await startBroker({ workers: 1, env, args: ['--redis.url', redis.url, '--redis.keyPrefix', keyPrefix, '--sys.intervalMs', '0', ...FAST_MEMBERSHIP] });
  extra.push(node);
  return node;
}

describe('cluster membership', () => {
  it('node ids: --nodeId, else POD_NAME, else HOSTNAME; every node sees the others', async () => {
    const cl = await cluster(['explicit']);
    const A = cl.node('explicit');
    expect((await A.waitForLog((l) => l.msg === 'starling listening')).nodeId).toBe('explicit');
    const fromPod = await nodeFromEnv(cl.keyPrefix, { POD_NAME: 'pod-7', HOSTNAME: 'ignored-host' });
    expect((await fromPod.waitForLog((l) => l.msg === 'starling listening')).nodeId).toBe('pod-7');
    const fromHost = await nodeFromEnv(cl.keyPrefix, { POD_NAME: '', HOSTNAME: 'host-9' });
    // An empty POD_NAME is as good as none: HOSTNAME then.
    expect((await fromHost.waitForLog((l) => l.msg === 'starling listening')).nodeId).toBe('host-9');
    await waitForNodes([A, fromPod, fromHost], 3);
    // Messages flow between nodes named either way.
    const sub = await client(fromPod);
    const rec = record(sub);
    await sub.subscribeAsync('cl/ids/x', { qos: 1 });
    await (await client(A)).publishAsync('cl/ids/x', 'hi', { qos: 1 });
    await rec.until(onTopic('cl/ids/x'));
  }, 60_000);

  it('a node that stops answering (SIGSTOP) is declared dead after its TTL: its wills published, its routes dropped; back (SIGCONT), it registers again and is routed to', async () => {
    const cl = await cluster(['A', 'B']);
    const [A, B] = [cl.node('A'), cl.node('B')];
    const base = `cl/frozen/${uniqueId()}`;
    const watcher = await client(A);
    const rec = record(watcher);
    await watcher.subscribeAsync([`${base}/will`, `${base}/fence`], { qos: 1 });
    await raw(B.port, 4, { clientId: uniqueId('will'), keepalive: 600, will: { topic: `${base}/will`, payload: Buffer.from('frozen'), qos: 1, retain: false } as never });
    const subB = await client(B);
    const recB = record(subB);
    await subB.subscribeAsync(`${base}/to-b`, { qos: 1 });

    B.child.kill('SIGSTOP');
    await waitForMetric(A, 'starling_cluster_nodes', (v) => v === 1, 15_000);
    const will = await rec.until(onTopic(`${base}/will`), 10_000);
    expect(will).toEqual([]);
    expect(rec.got.filter((r) => r.topic === `${base}/will`).map((r) => r.payload.toString())).toEqual(['frozen']);
    // B's routes are gone: A sends it nothing.
    const pub = await client(A);
    const outA = await metric(A, 'starling_cluster_messages_out_total');
    await pub.publishAsync(`${base}/to-b`, 'lost', { qos: 1 });
    expect(await metric(A, 'starling_cluster_messages_out_total')).toBe(outA);

    B.child.kill('SIGCONT');
    await B.waitForLog((l) => /registering again|registered again/.test(l.msg), 15_000);
    await waitForNodes([A, B], 2);
    // Its routes are back in A's replica once B's re-registration is announced; a fence from A to a new
    // route on B (its SUBACK waits for A's acknowledgement, after the re-registration) proves it.
    await subB.subscribeAsync(`${base}/fence-b`, { qos: 1 });
    await pub.publishAsync(`${base}/to-b`, 'again', { qos: 1 });
    await pub.publishAsync(`${base}/fence-b`, 'f', { qos: 1 });
    expect((await recB.until(onTopic(`${base}/fence-b`), 10_000)).map((r) => r.payload.toString())).toEqual(['again']);
    // The will was published once, and only once.
    await pub.publishAsync(`${base}/fence`, 'f', { qos: 1 });
    await rec.until(onTopic(`${base}/fence`));
    expect(rec.got.filter((r) => r.topic === `${base}/will`)).toHaveLength(1);
  }, 60_000);

  it('a node leaving gracefully (SIGTERM) leaves membership at once', async () => {
    const cl = await cluster(['A', 'B', 'C']);
    await cl.node('C').stop('SIGTERM');
    // Well before a TTL could have expired: the leave is announced.
    await waitForNodes([cl.node('A'), cl.node('B')], 2, 1500);
  }, 60_000);

  it('a node restarted under the same id publishes the wills of its previous life once, drops its stale routes, and its sessions resume', async () => {
    const cl = await cluster(['A', 'B']);
    const [A, B] = [cl.node('A'), cl.node('B')];
    const base = `cl/restart/${uniqueId()}`;
    const watcher = await client(B);
    const rec = record(watcher);
    await watcher.subscribeAsync([`${base}/will/#`, `${base}/fence`], { qos: 1 });
    const WILLS = 5;
    for (let i = 0; i < WILLS; i++) await raw(A.port, 5, { clientId: uniqueId('will'), will: { topic: `${base}/will/${i}`, payload: Buffer.from(`w${i}`), qos: 1, retain: false } as never });
    const stale = await client(A);
    await stale.subscribeAsync(`${base}/stale`, { qos: 1 });
    const pid = uniqueId('persist');
    const persistent = { clientId: pid, clean: false, properties: { sessionExpiryInterval: 300 } };
    const p = await raw(A.port, 5, persistent);
    p.c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${base}/p`, qos: 1 }], properties: {} } as never);
    await p.c.next('suback');

    // Listening from before the crash: B may reap A and publish its wills while A restarts.
    const wills: Received[] = [];
    const allWills = new Promise<void>((resolve, reject) => {
      watcher.on('message', (topic, payload, packet) => {
        if (!topic.startsWith(`${base}/will/`)) return;
        wills.push({ topic, payload, packet: packet as Received['packet'] });
        if (wills.length === WILLS) resolve();
      });
      A.exited.then(() => setTimeout(() => reject(new Error(`${wills.length} of ${WILLS} wills`)), 30_000).unref(), reject);
    });
    A.child.kill('SIGKILL');
    await A.exited;
    const A2 = await cl.start('A');
    // Whichever came first, B reaping A or A's new life finding its old wills: each will once.
    await allWills;
    expect(wills.map((w) => w.payload.toString()).sort()).toEqual(Array.from({ length: WILLS }, (_, i) => `w${i}`));

    // The new life's routes replaced the old ones in B's replica: a route of the new life, acknowledged
    // by B, orders after that.
    await waitForNodes([A2, B], 2);
    const fresh = await client(A2);
    const recFresh = record(fresh);
    await fresh.subscribeAsync(`${base}/fresh`, { qos: 1 });
    const pub = await client(B);
    const outB = await metric(B, 'starling_cluster_messages_out_total');
    await pub.publishAsync(`${base}/stale`, 'nobody', { qos: 1 });
    expect(await metric(B, 'starling_cluster_messages_out_total')).toBe(outB);
    await pub.publishAsync(`${base}/fresh`, 'yes', { qos: 1 });
    await recFresh.until(onTopic(`${base}/fresh`));

    // No will twice.
    await pub.publishAsync(`${base}/fence`, 'f', { qos: 1 });
    const before = await rec.until(onTopic(`${base}/fence`), 10_000);
    expect(before.filter((r) => r.topic.startsWith(`${base}/will/`))).toHaveLength(WILLS);

    // The persistent session of the previous life resumes, on the other node.
    const back = await raw(B.port, 5, persistent);
    expect(back.ack.sessionPresent).toBe(true);
    await (await client(A2)).publishAsync(`${base}/p`, 'resumed', { qos: 1 });
    expect((await back.c.next<IPublishPacket>('publish', 10_000)).payload.toString()).toBe('resumed');
  }, 60_000);
});
