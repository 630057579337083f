// Shared subscriptions span nodes: each message goes to exactly one member of a group cluster-wide,
// spread over members on different nodes; groups are independent of each other and of plain subscribers.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { uniqueId, type Received } from './helpers/clients.ts';
import { endClients, fatalLines, keepLogsOnFailure, nodeClient, RedisServer, startCluster, type Cluster } from './helpers/cluster.ts';
import { record, type Recorder } from './helpers/receive.ts';

let redis: RedisServer;
let cluster: Cluster;
const clients: MqttClient[] = [];

async function client(nodeId: string): Promise<MqttClient> {
  const c = await nodeClient(cluster.node(nodeId), { protocolVersion: 5, clientId: uniqueId(nodeId) });
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

interface Member {
  node: string;
  rec: Recorder;
}

async function member(node: string, filter: string, fence: string): Promise<Member> {
  const c = await client(node);
  const rec = record(c);
  await c.subscribeAsync(filter, { qos: 1 });
  await c.subscribeAsync(fence, { qos: 1 });
  return { node, rec };
}

/** Everything a member received before `fences` fence messages (plain subscription: each member gets every fence). */
async function beforeFences(m: Member, fence: string, fences: number): Promise<Received[]> {
  let n = 0;
  const got = await m.rec.until((r) => r.topic === fence && ++n === fences, 20_000);
  return got.filter((r) => r.topic !== fence);
}

describe('cluster shared subscriptions (3 nodes)', () => {
  it('one member per message cluster-wide: 4 members on 3 nodes, 300 messages from publishers on A and B', async () => {
    const t = `cl/share/${uniqueId()}`;
    const fence = `${t}-fence`;
    const filter = `$share/g/${t}/+`;
    const members = [await member('A', filter, fence), await member('B', filter, fence), await member('C', filter, fence), await member('C', filter, fence)];
    const pubs = [await client('A'), await client('B')];
    const N = 150;
    await Promise.all(
      pubs.map(async (p, k) => {
        for (let i = 0; i < N; i++) await p.publishAsync(`${t}/p${k}`, `${k}:${i}`, { qos: 1 });
        await p.publishAsync(fence, 'f', { qos: 1 });
      }),
    );
    const got = await Promise.all(members.map((m) => beforeFences(m, fence, pubs.length)));
    const all = got.flat().map((r) => r.payload.toString());
    // Exactly once across the group.
    expect(all.length).toBe(2 * N);
    expect(new Set(all).size).toBe(2 * N);
    // Spread: every node's members got a share, and so did every member.
    for (const [i, g] of got.entries()) expect(g.length, `member ${i} on ${members[i]!.node}`).toBeGreaterThan(0);
    // Each member sees each publisher's messages in order.
    for (const g of got) {
      for (let k = 0; k < 2; k++) {
        const seq = g.map((r) => r.payload.toString()).filter((p) => p.startsWith(`${k}:`)).map((p) => Number(p.split(':')[1]));
        expect(seq).toEqual([...seq].sort((a, b) => a - b));
      }
    }
  });

  it('two groups and a plain subscriber: each group gets every message once, the plain subscriber all', async () => {
    const t = `cl/share2/${uniqueId()}`;
    const fence = `${t}-fence`;
    const g1 = [await member('A', `$share/one/${t}`, fence), await member('B', `$share/one/${t}`, fence)];
    const g2 = [await member('B', `$share/two/${t}`, fence), await member('C', `$share/two/${t}`, fence)];
    const plain = await member('C', t, fence);
    const pub = await client('A');
    const N = 60;
    for (let i = 0; i < N; i++) await pub.publishAsync(t, `m${i}`, { qos: 1 });
    await pub.publishAsync(fence, 'f', { qos: 1 });
    const want = Array.from({ length: N }, (_, i) => `m${i}`);
    for (const group of [g1, g2]) {
      const got = (await Promise.all(group.map((m) => beforeFences(m, fence, 1)))).flat().map((r) => r.payload.toString());
      expect(got.sort()).toEqual([...want].sort());
    }
    expect((await beforeFences(plain, fence, 1)).map((r) => r.payload.toString())).toEqual(want);
  });

  it('a member leaving on one node: the rest of the group, on other nodes, gets every later message once', async () => {
    const t = `cl/share-leave/${uniqueId()}`;
    const fence = `${t}-fence`;
    const filter = `$share/g/${t}`;
    const leaving = await client('B');
    await leaving.subscribeAsync(filter, { qos: 1 });
    const stay = [await member('A', filter, fence), await member('C', filter, fence)];
    const pub = await client('A');
    for (let i = 0; i < 20; i++) await pub.publishAsync(t, `before${i}`, { qos: 1 });
    await leaving.unsubscribeAsync(filter);
    for (let i = 0; i < 40; i++) await pub.publishAsync(t, `after${i}`, { qos: 1 });
    await pub.publishAsync(fence, 'f', { qos: 1 });
    const got = (await Promise.all(stay.map((m) => beforeFences(m, fence, 1)))).flat().map((r) => r.payload.toString());
    const after = got.filter((p) => p.startsWith('after'));
    expect(after.sort()).toEqual(Array.from({ length: 40 }, (_, i) => `after${i}`).sort());
  });
});
