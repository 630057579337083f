// A node crash (SIGKILL): the surviving nodes publish every will of its clients exactly once (one
// survivor claims each) within a bounded time, drop its routes, and keep its persistent sessions
// resumable (and subscribed: messages published after the crash wait for the client on a survivor).
import type { IConnackPacket, IPublishPacket } from 'mqtt-packet';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { BrokerProcess } from './helpers/broker.ts';
import { RawClient, uniqueId, type Received } from './helpers/clients.ts';
import { endClients, keepLogsOnFailure, fatalLines, metric, nodeClient, RedisServer, startCluster, waitForMetric, type Cluster } from './helpers/cluster.ts';
import { onTopic, record } from './helpers/receive.ts';

let redis: RedisServer;
const clusters: Cluster[] = [];
const clients: MqttClient[] = [];
const raws: RawClient[] = [];

/** This test's processes, kept after it (stopped) for the failure log dump. */
const ended: BrokerProcess[] = [];
keepLogsOnFailure(() => [...ended, ...clusters.flatMap((c) => c.all)]);
beforeEach(() => void (ended.length = 0));
beforeAll(async () => {
  redis = await RedisServer.start();
});
afterEach(async () => {
  await endClients(clients.splice(0));
  for (const r of raws.splice(0)) r.destroy();
  for (const c of clusters.splice(0)) {
    ended.push(...c.all);
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

/** Resolves with `n` messages matching pred (in arrival order), rejecting after timeoutMs. */
function collectN(c: MqttClient, n: number, pred: (r: Received) => boolean, timeoutMs: number): Promise<Received[]> {
  const got: Received[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${got.length} of ${n} messages within ${timeoutMs} ms`)), timeoutMs);
    c.on('message', (topic, payload, packet) => {
      const r = { topic, payload, packet: packet as Received['packet'] };
      if (!pred(r)) return;
      got.push(r);
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

describe('cluster: a node crashes (SIGKILL)', () => {
  it("its clients' wills are published exactly once by the survivors within 10 s; its routes go; its persistent session resumes on another node", async () => {
    const cl = await cluster(['A', 'B', 'C']);
    const [A, B, C] = [cl.node('A'), cl.node('B'), cl.node('C')];
    const base = `cl/crash/${uniqueId()}`;

    // Watchers on both survivors.
    const watchers = [await nodeClient(B), await nodeClient(C)];
    clients.push(...watchers);
    const recs = watchers.map((w) => record(w));
    for (const w of watchers) await w.subscribeAsync([`${base}/will/#`, `${base}/fence`], { qos: 1 });
    const WILLS = 12;
    const willsSeen = watchers.map((w) => collectN(w, WILLS, (r) => r.topic.startsWith(`${base}/will/`), 30_000));

    // Clients with wills on A (v3.1.1 and v5), a route only A has, and a persistent session on A.
    for (let i = 0; i < WILLS; i++) {
      const version = i % 2 === 0 ? 4 : 5;
      await raw(A.port, version, { clientId: uniqueId('will'), will: { topic: `${base}/will/${i}`, payload: Buffer.from(`w${i}`), qos: 1, retain: false } as never });
    }
    const onlyA = await nodeClient(A);
    clients.push(onlyA);
    await onlyA.subscribeAsync(`${base}/only-a`, { qos: 1 });
    const pid = uniqueId('persist');
    const persistent = { clientId: pid, clean: false, properties: { sessionExpiryInterval: 300 } };
    const p = await raw(A.port, 5, persistent);
    p.c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${base}/p`, qos: 1 }], properties: {} } as never);
    await p.c.next('suback');
    // Another one that comes back at once, before A is declared dead: its claim cannot be answered by A.
    const quick = { clientId: uniqueId('quick'), clean: false, properties: { sessionExpiryInterval: 300 } };
    const q = await raw(A.port, 5, quick);
    q.c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${base}/quick`, qos: 1 }], properties: {} } as never);
    await q.c.next('suback');

    const killedAt = Date.now();
    A.child.kill('SIGKILL');
    await A.exited;
    // It waits for A only until A is known dead, then resumes the stored copy (its subscriptions).
    const quickBack = await raw(B.port, 5, quick);
    expect(quickBack.ack.sessionPresent).toBe(true);
    await B.waitForLog((l) => l.msg === 'session handover not answered; resuming the stored copy' && l.clientId === quick.clientId);

    // Every will reaches every watcher, once each, well within the bound (nodeTtlMs 2000 here).
    const got = await Promise.all(willsSeen);
    const elapsed = Date.now() - killedAt;
    expect(elapsed).toBeLessThan(10_000);
    for (const g of got) expect(g.map((r) => r.payload.toString()).sort()).toEqual(Array.from({ length: WILLS }, (_, i) => `w${i}`).sort());
    // Exactly one survivor took over, and nothing else follows the wills.
    const pub = await nodeClient(B);
    clients.push(pub);
    await pub.publishAsync(`${base}/fence`, 'f', { qos: 1 });
    for (const rec of recs) {
      const before = await rec.until(onTopic(`${base}/fence`), 10_000);
      expect(before.filter((r) => r.topic.startsWith(`${base}/will/`))).toHaveLength(WILLS);
    }
    const takeovers = [B, C].flatMap((n) => n.logs.filter((l) => l.msg === 'took over after a dead node' && l.dead === 'A'));
    expect(takeovers).toHaveLength(1);
    expect(takeovers[0]!.wills).toBe(WILLS);
    expect(takeovers[0]!.sessions).toBeGreaterThanOrEqual(1);

    // A is gone from membership, and its routes with it: nothing is sent to A any more.
    await waitForMetric(B, 'starling_cluster_nodes', (v) => v === 2);
    await waitForMetric(C, 'starling_cluster_nodes', (v) => v === 2);
    const outB = await metric(B, 'starling_cluster_messages_out_total');
    await pub.publishAsync(`${base}/only-a`, 'nobody', { qos: 1 });
    await pub.publishAsync(`${base}/fence`, 'f2', { qos: 1 });
    await recs[1]!.until(onTopic(`${base}/fence`));
    // Only the fence went out (to C, which has a watcher on it).
    expect(await metric(B, 'starling_cluster_messages_out_total')).toBe(outB + 1);

    // The persistent session was adopted by the survivor and still receives; it resumes on C.
    await pub.publishAsync(`${base}/p`, 'after-crash', { qos: 1 });
    const back = await raw(C.port, 5, persistent);
    expect(back.ack.sessionPresent).toBe(true);
    const m = await back.c.next<IPublishPacket>('publish', 10_000);
    expect(m.payload.toString()).toBe('after-crash');
    back.c.send({ cmd: 'puback', messageId: m.messageId });
    await pub.publishAsync(`${base}/p`, 'live', { qos: 1 });
    expect((await back.c.next<IPublishPacket>('publish', 10_000)).payload.toString()).toBe('live');
    await pub.publishAsync(`${base}/quick`, 'for-quick', { qos: 1 });
    expect((await quickBack.c.next<IPublishPacket>('publish', 10_000)).payload.toString()).toBe('for-quick');
  }, 60_000);

  it('a will with a Will Delay Interval of a crashed node is published once after its delay, not before; one whose client reconnects meanwhile is not', async () => {
    const cl = await cluster(['A', 'B']);
    const [A, B] = [cl.node('A'), cl.node('B')];
    const base = `cl/crash-delay/${uniqueId()}`;
    const w = await nodeClient(B);
    clients.push(w);
    await w.subscribeAsync(`${base}/#`, { qos: 1 });
    const seen = collectN(w, 1, (r) => r.topic === `${base}/will`, 30_000);
    const rec = record(w);
    const delayed = (clientId: string, topic: string) => ({
      clientId,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: { topic, payload: Buffer.from(clientId), qos: 1, retain: false, properties: { willDelayInterval: 4 } } as never,
    });
    const late = uniqueId('late');
    const back = uniqueId('back');
    await raw(A.port, 5, delayed(late, `${base}/will`));
    await raw(A.port, 5, delayed(back, `${base}/will-back`));
    const killedAt = Date.now();
    A.child.kill('SIGKILL');
    await A.exited;
    // Once B took over (the delays are running there), this one comes back, without a will: its will
    // must never be published.
    const took = await B.waitForLog((l) => l.msg === 'took over after a dead node' && l.dead === 'A', 10_000);
    expect(took.wills).toBe(2);
    await raw(B.port, 5, { clientId: back, clean: false, properties: { sessionExpiryInterval: 60 } });
    const [will] = await seen;
    expect(will!.payload.toString()).toBe(late);
    // Published by the survivor no earlier than the delay after the crash was detected; still bounded.
    const elapsed = Date.now() - killedAt;
    expect(elapsed).toBeGreaterThanOrEqual(4000);
    expect(elapsed).toBeLessThan(20_000);
    // The returning client's delayed will came due too and was dropped; nothing else was published.
    await B.waitForLog((l) => l.clientId === back && /^will not published/.test(l.msg), 10_000);
    const pub = await nodeClient(B);
    clients.push(pub);
    await pub.publishAsync(`${base}/fence`, 'f', { qos: 1 });
    expect((await rec.until(onTopic(`${base}/fence`))).map((r) => r.topic)).toEqual([`${base}/will`]);
  }, 60_000);
});
