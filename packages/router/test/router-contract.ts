// The contract every Router implementation passes (see src/contract.ts). Each test gets a fresh cluster;
// nodes are routers of that cluster, each with a recorder for what the router tells its node.
//
// Absence ("node C got nothing") is checked with a fence: after the publish under test resolved, another
// node publishes to a route only the checked node has and the test waits for it there. A router hands
// messages to a node in the order the transport accepted them, so anything sent earlier arrived first.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NodeHandlers, Router } from '../src/contract.ts';
import type { HandoverSignal, Message, SessionOwner, StoredSession, StoredWill } from '../src/types.ts';

export interface ContractCluster {
  /** A router for node id (not started) on this cluster. */
  node(id: string): Router;
  close(): Promise<void>;
}

interface Delivery {
  message: Message;
  groups: readonly string[];
  normal: boolean;
}

export class Recorder implements NodeHandlers {
  readonly deliveries: Delivery[] = [];
  readonly takeovers: Array<{ clientId: string; owner: SessionOwner; by: SessionOwner }> = [];
  readonly downs: string[] = [];
  readonly handovers: HandoverSignal[] = [];
  readonly changes: Array<{ filter: string; group: string; present: boolean }> = [];
  private readonly checks = new Set<() => void>();

  deliver(message: Message, groups: readonly string[], normal: boolean): void {
    this.deliveries.push({ message, groups, normal });
    this.poke();
  }

  takeover(clientId: string, owner: SessionOwner, by: SessionOwner): void {
    this.takeovers.push({ clientId, owner, by });
    this.poke();
  }

  handedOver(signal: HandoverSignal): void {
    this.handovers.push(signal);
    this.poke();
  }

  nodeDown(nodeId: string): void {
    this.downs.push(nodeId);
    this.poke();
  }

  routesChanged(filter: string, group: string, present: boolean): void {
    this.changes.push({ filter, group, present });
    this.poke();
  }

  /** Resolves with find()'s first non-undefined result, re-checked on every event. */
  until<T>(find: () => T | undefined, what: string, timeoutMs = 4000): Promise<T> {
    const now = find();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = find();
        if (found === undefined) return;
        this.checks.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.checks.delete(check);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      this.checks.add(check);
    });
  }

  delivered(topic: string): Delivery[] {
    return this.deliveries.filter((d) => d.message.topic === topic);
  }

  private poke(): void {
    for (const check of [...this.checks]) check();
  }
}

interface TestNode {
  id: string;
  router: Router;
  rec: Recorder;
}

function msg(topic: string, payload: string | Uint8Array = 'x', extra: Partial<Message> = {}): Message {
  return {
    topic,
    payload: typeof payload === 'string' ? new Uint8Array(Buffer.from(payload)) : payload,
    qos: 1,
    retain: false,
    origin: 'publisher',
    receivedAt: 1_700_000_000_000,
    ...extra,
  };
}

function owner(nodeId: string, connId: number, workerId = 0): SessionOwner {
  return { nodeId, workerId, connId };
}

function session(clientId: string, extra: Partial<StoredSession> = {}): StoredSession {
  return {
    clientId,
    protocolVersion: 5,
    subscriptions: { 'a/+': { qos: 1, noLocal: false, retainAsPublished: true, retainHandling: 0, subscriptionId: 7 } },
    expiryInterval: 3600,
    inflight: [{ packetId: 3, message: msg('a/b', Uint8Array.of(0, 1, 254, 255)), state: 'publish' }],
    inboundQos2: [9, 10],
    ...extra,
  };
}

function will(clientId: string, by: SessionOwner, extra: Partial<StoredWill> = {}): StoredWill {
  return { clientId, owner: by, message: msg(`wills/${clientId}`, Uint8Array.of(0, 200, 7), { retain: true }), ...extra };
}

function bytes(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** Compares messages with payloads as bytes (an implementation may hand back a Buffer or a Uint8Array). */
function plain(m: Message): unknown {
  const { payload, properties, ...rest } = m;
  const props = properties && {
    ...properties,
    ...(properties.correlationData ? { correlationData: [...properties.correlationData] } : {}),
  };
  return { ...rest, payload: bytes(payload).toString('hex'), ...(props ? { properties: props } : {}) };
}

function plainSession(s: StoredSession): unknown {
  return { ...s, inflight: s.inflight.map((f) => ({ ...f, message: plain(f.message) })) };
}

function plainWill(w: StoredWill): unknown {
  return { ...w, message: plain(w.message) };
}

export function runRouterContract(name: string, makeCluster: () => Promise<ContractCluster>): void {
  describe(`router contract: ${name}`, () => {
    let cluster: ContractCluster;
    let fences = 0;

    beforeEach(async () => {
      cluster = await makeCluster();
    });

    afterEach(async () => {
      await cluster.close();
    });

    async function start(id: string): Promise<TestNode> {
      const router = cluster.node(id);
      const rec = new Recorder();
      await router.start(rec);
      return { id, router, rec };
    }

    async function nodes(...ids: string[]): Promise<TestNode[]> {
      const out: TestNode[] = [];
      for (const id of ids) out.push(await start(id));
      return out;
    }

    /** Waits until everything `from` published before reached `to` (see the file comment). */
    async function fence(from: TestNode, to: TestNode): Promise<void> {
      const topic = `$fence/${to.id}/${++fences}`;
      await to.router.addRoute(topic);
      await from.router.publish(msg(topic));
      await to.rec.until(() => (to.rec.delivered(topic).length > 0 ? true : undefined), `fence ${topic}`);
      await to.router.removeRoute(topic);
    }

    describe('routes', () => {
      it('addRoute resolves once other nodes route matching topics here; removeRoute undoes it', async () => {
        const [a, b] = await nodes('A', 'B');
        await b!.router.addRoute('a/b');
        expect(a!.router.hasRemoteRoute('a/b')).toBe(true);
        expect(a!.router.hasRemoteRoute('a/c')).toBe(false);
        // A node's own routes are not remote to it.
        expect(b!.router.hasRemoteRoute('a/b')).toBe(false);
        await b!.router.removeRoute('a/b');
        expect(a!.router.hasRemoteRoute('a/b')).toBe(false);
      });

      it("wildcards: '+' matches exactly one level [MQTT-4.7.1-3], '#' any number including the parent [MQTT-4.7.1-2]", async () => {
        const [a, b] = await nodes('A', 'B');
        const cases: Array<[string, Record<string, boolean>]> = [
          ['sport/tennis/+', { 'sport/tennis/player1': true, 'sport/tennis/player1/ranking': false, 'sport/tennis': false }],
          ['sport/#', { sport: true, 'sport/tennis/player1': true, sports: false, 'sport/': true }],
          ['#', { a: true, 'a/b/c': true, '/': true }],
          ['+', { a: true, 'a/b': false, '/a': false }],
          ['+/+', { '/finance': true, finance: false }],
          ['/+', { '/finance': true, 'x/finance': false }],
          ['sport/+/player1', { 'sport//player1': true, 'sport/tennis/player1': true, 'sport/tennis/x': false }],
          ['a/b', { 'a/b': true, 'a/b/c': false, 'A/B': false }],
        ];
        for (const [filter, topics] of cases) {
          await b!.router.addRoute(filter);
          for (const [topic, expected] of Object.entries(topics)) expect([filter, topic, a!.router.hasRemoteRoute(topic)]).toEqual([filter, topic, expected]);
          await b!.router.removeRoute(filter);
        }
      });

      it("'$' topics are not matched by filters starting with a wildcard [MQTT-4.7.2-1]", async () => {
        const [a, b] = await nodes('A', 'B');
        await b!.router.addRoute('#');
        await b!.router.addRoute('+/monitor/Clients');
        expect(a!.router.hasRemoteRoute('$SYS/monitor/Clients')).toBe(false);
        expect(a!.router.hasRemoteRoute('x/monitor/Clients')).toBe(true);
        await b!.router.addRoute('$SYS/monitor/+');
        expect(a!.router.hasRemoteRoute('$SYS/monitor/Clients')).toBe(true);
        await b!.router.addRoute('$SYS/#');
        expect(a!.router.hasRemoteRoute('$SYS')).toBe(true);
      });

      it('publish reaches each other node with a matching route once; never the publisher, nor nodes without a match', async () => {
        const [a, b, c] = await nodes('A', 'B', 'C');
        await a!.router.addRoute('a/b'); // the publisher's own subscribers are served by the node itself
        await b!.router.addRoute('a/+');
        await b!.router.addRoute('a/#'); // two matching routes on one node: still one delivery
        await c!.router.addRoute('x/y');
        await a!.router.publish(msg('a/b', 'hello'));
        const [got] = await b!.rec.until(() => (b!.rec.delivered('a/b').length ? b!.rec.delivered('a/b') : undefined), 'delivery on B');
        expect(got!.normal).toBe(true);
        expect(got!.groups).toEqual([]);
        expect(bytes(got!.message.payload).toString()).toBe('hello');
        await fence(a!, c!);
        await fence(b!, a!);
        await fence(a!, b!);
        expect(b!.rec.delivered('a/b')).toHaveLength(1);
        expect(c!.rec.delivered('a/b')).toHaveLength(0);
        expect(a!.rec.delivered('a/b')).toHaveLength(0);
      });

      it('messages survive the trip byte-exact: payload, properties (MQTT 5.0 §3.3.2.3), qos, retain, expiry, origin', async () => {
        const [a, b] = await nodes('A', 'B');
        await b!.router.addRoute('bin/#');
        const all = new Uint8Array(256).map((_, i) => i);
        const big = new Uint8Array(70_000).map((_, i) => (i * 31) & 0xff);
        const sent = [
          msg('bin/all', all, {
            qos: 2,
            retain: true,
            expiresAt: 1_900_000_000_123,
            origin: 'clïent-✓',
            properties: {
              payloadFormatIndicator: false,
              contentType: 'application/octet-stream',
              responseTopic: 'reply/ü',
              correlationData: Uint8Array.of(0, 255, 10, 13),
              userProperties: { a: '1', multi: ['x', 'y', 'x'] },
            },
          }),
          msg('bin/big', big, { qos: 0 }),
          msg('bin/empty', new Uint8Array(0)),
        ];
        for (const m of sent) await a!.router.publish(m);
        await b!.rec.until(() => (b!.rec.deliveries.length >= 3 ? true : undefined), 'three deliveries');
        expect(b!.rec.deliveries.map((d) => plain(d.message))).toEqual(sent.map(plain));
      });

      it('publish with no remote route resolves and delivers nothing', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.publish(msg('nobody/listens'));
        await fence(a!, b!);
        expect(b!.rec.delivered('nobody/listens')).toHaveLength(0);
      });

      it('a node that starts later sees the routes that exist, and hears of them through routesChanged', async () => {
        const [, b] = await nodes('A', 'B');
        await b!.router.addRoute('late/+');
        await b!.router.addRoute('late/+', 'g');
        const c = await start('C');
        expect(c.router.hasRemoteRoute('late/x')).toBe(true);
        expect(c.rec.changes).toEqual(
          expect.arrayContaining([
            { filter: 'late/+', group: '', present: true },
            { filter: 'late/+', group: 'g', present: true },
          ]),
        );
      });

      it("a closed node's routes are gone from the others", async () => {
        const [a, b] = await nodes('A', 'B');
        await b!.router.addRoute('gone/+');
        expect(a!.router.hasRemoteRoute('gone/1')).toBe(true);
        await b!.router.close();
        await a!.rec.until(() => a!.rec.changes.find((c) => c.filter === 'gone/+' && !c.present), 'routesChanged(gone/+, false)');
        expect(a!.router.hasRemoteRoute('gone/1')).toBe(false);
      });

      it('routesChanged fires when the set of other nodes holding (filter, group) turns non-empty or empty', async () => {
        const [a, b, c] = await nodes('A', 'B', 'C');
        const changes = a!.rec.changes;
        await b!.router.addRoute('r/+');
        expect(changes).toEqual([{ filter: 'r/+', group: '', present: true }]);
        await c!.router.addRoute('r/+');
        expect(changes).toHaveLength(1);
        await b!.router.addRoute('r/+', 'g');
        expect(changes[1]).toEqual({ filter: 'r/+', group: 'g', present: true });
        await b!.router.removeRoute('r/+');
        expect(changes).toHaveLength(2);
        await c!.router.removeRoute('r/+');
        expect(changes[2]).toEqual({ filter: 'r/+', group: '', present: false });
        await b!.router.removeRoute('r/+', 'g');
        expect(changes[3]).toEqual({ filter: 'r/+', group: 'g', present: false });
        // Own routes are not reported to the node itself.
        expect(b!.rec.changes.filter((ch) => ch.group === 'g')).toEqual([]);
        expect(changes).toHaveLength(4);
      });
    });


    describe('shared subscriptions (MQTT 5.0 §4.8.2)', () => {
      it('each message goes to exactly one node of the group, spread over the nodes', async () => {
        const [a, ...members] = await nodes('A', 'B', 'C', 'D');
        for (const m of members) await m.router.addRoute('s/+', 'g');
        const total = 30;
        await Promise.all(Array.from({ length: total }, (_, i) => a!.router.publish(msg(`s/${i}`))));
        for (const m of members) await fence(a!, m);
        const perNode = members.map((m) => m.rec.deliveries.filter((d) => d.message.topic.startsWith('s/')));
        const topics = perNode.flat().map((d) => d.message.topic);
        expect(topics).toHaveLength(total);
        expect(new Set(topics).size).toBe(total);
        for (const d of perNode.flat()) {
          expect(d.groups).toEqual(['g/s/+']);
          expect(d.normal).toBe(false);
        }
        for (const got of perNode) expect(got.length).toBeGreaterThan(0);
      });

      it('several groups on one filter each get every message once; a plain route on the same node is flagged normal', async () => {
        const [a, b, c] = await nodes('A', 'B', 'C');
        await b!.router.addRoute('t/+', 'g1');
        await b!.router.addRoute('t/+');
        await c!.router.addRoute('t/+', 'g1');
        await c!.router.addRoute('t/+', 'g2');
        const total = 10;
        await Promise.all(Array.from({ length: total }, (_, i) => a!.router.publish(msg(`t/${i}`))));
        await fence(a!, b!);
        await fence(a!, c!);
        const all = [...b!.rec.deliveries, ...c!.rec.deliveries].filter((d) => d.message.topic.startsWith('t/'));
        const perGroup = (key: string) => all.filter((d) => d.groups.includes(key)).map((d) => d.message.topic).sort();
        const expected = Array.from({ length: total }, (_, i) => `t/${i}`).sort();
        expect(perGroup('g1/t/+')).toEqual(expected);
        expect(perGroup('g2/t/+')).toEqual(expected);
        const onB = b!.rec.deliveries.filter((d) => d.message.topic.startsWith('t/'));
        // One call per message and node, whatever it is for.
        expect(onB).toHaveLength(total);
        for (const d of onB) expect(d.normal).toBe(true);
        for (const d of c!.rec.deliveries.filter((d) => d.message.topic.startsWith('t/'))) expect(d.normal).toBe(false);
      });

      it('servedGroups: groups the publishing node already served are not routed again', async () => {
        const [a, b] = await nodes('A', 'B');
        await b!.router.addRoute('t', 'g');
        await b!.router.addRoute('t', 'h');
        await a!.router.publish(msg('t', 'one'), new Set(['g/t']));
        await a!.router.publish(msg('t', 'two'), new Set(['g/t', 'h/t']));
        await fence(a!, b!);
        const got = b!.rec.delivered('t');
        expect(got.map((d) => [bytes(d.message.payload).toString(), d.groups, d.normal])).toEqual([['one', ['h/t'], false]]);
      });
    });

    describe('retained messages', () => {
      it('set on one node, read on another; a new one replaces it [MQTT-3.3.1-5]; an empty payload deletes it [MQTT-3.3.1-10]', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.setRetained(msg('r/1', 'first', { retain: true }));
        expect((await b!.router.getRetained('r/1')).map((m) => bytes(m.payload).toString())).toEqual(['first']);
        await b!.router.setRetained(msg('r/1', 'second', { retain: true }));
        expect((await a!.router.getRetained('r/1')).map((m) => bytes(m.payload).toString())).toEqual(['second']);
        expect(await a!.router.retainedCount()).toBe(1);
        await a!.router.setRetained(msg('r/1', '', { retain: true }));
        expect(await b!.router.getRetained('r/1')).toEqual([]);
        expect(await b!.router.retainedCount()).toBe(0);
      });

      it("getRetained matches wildcard filters; '$' topics only by filters not starting with a wildcard [MQTT-4.7.2-1]", async () => {
        const [a, b] = await nodes('A', 'B');
        for (const topic of ['r', 'r/a', 'r/b/c', '$SYS/x', 'other', 'r/']) await a!.router.setRetained(msg(topic, topic, { retain: true }));
        const topics = async (filter: string) => (await b!.router.getRetained(filter)).map((m) => m.topic).sort();
        expect(await topics('r/+')).toEqual(['r/', 'r/a']);
        expect(await topics('r/#')).toEqual(['r', 'r/', 'r/a', 'r/b/c']);
        expect(await topics('#')).toEqual(['other', 'r', 'r/', 'r/a', 'r/b/c']);
        expect(await topics('+/+/c')).toEqual(['r/b/c']);
        expect(await topics('$SYS/#')).toEqual(['$SYS/x']);
        expect(await topics('+/x')).toEqual([]);
        expect(await topics('r/a')).toEqual(['r/a']);
        expect(await topics('nothing')).toEqual([]);
        expect(await a!.router.retainedCount()).toBe(6);
      });

      it('keeps properties and binary payloads byte-exact', async () => {
        const [a, b] = await nodes('A', 'B');
        const m = msg('r/bin', new Uint8Array(1000).map((_, i) => (i * 7) & 0xff), {
          retain: true,
          qos: 2,
          origin: 'pub-1',
          expiresAt: Date.now() + 60_000,
          properties: { payloadFormatIndicator: true, contentType: 'text/x', responseTopic: 'r/reply', correlationData: Uint8Array.of(1, 0, 2), userProperties: { k: ['v1', 'v2'] } },
        });
        await a!.router.setRetained(m);
        expect((await b!.router.getRetained('r/bin')).map(plain)).toEqual([plain(m)]);
        expect((await b!.router.getRetained('r/#')).map(plain)).toEqual([plain(m)]);
      });

      it('does not return retained messages whose Message Expiry Interval passed (MQTT 5.0 §3.3.2.3.3)', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.setRetained(msg('e/old', 'old', { retain: true, expiresAt: Date.now() - 1 }));
        await a!.router.setRetained(msg('e/new', 'new', { retain: true, expiresAt: Date.now() + 60_000 }));
        expect((await b!.router.getRetained('e/+')).map((m) => m.topic)).toEqual(['e/new']);
        expect(await b!.router.getRetained('e/old')).toEqual([]);
      });
    });

    describe('sessions', () => {
      it('a first claim finds nothing before it', async () => {
        const [a] = await nodes('A');
        expect(await a!.router.claimSession('c1', owner('A', 1), false)).toEqual({});
      });

      it('a stored session is returned to the next claim on any node, and stays stored [MQTT-3.1.2-5]', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.claimSession('c1', owner('A', 1), false);
        const s = session('c1');
        await a!.router.saveSession(s);
        await a!.router.releaseSession('c1', owner('A', 1));
        const claim = await b!.router.claimSession('c1', owner('B', 5), false);
        expect(claim.previous).toBeUndefined();
        expect(plainSession(claim.stored!)).toEqual(plainSession(s));
        await b!.router.releaseSession('c1', owner('B', 5));
        expect(plainSession((await a!.router.claimSession('c1', owner('A', 2), false)).stored!)).toEqual(plainSession(s));
      });

      it("claiming a connected session displaces its owner and tells the owner's node [MQTT-3.1.4-3]", async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.claimSession('c1', owner('A', 1), false);
        const claim = await b!.router.claimSession('c1', owner('B', 2), false);
        expect(claim.previous).toEqual(owner('A', 1));
        const t = await a!.rec.until(() => a!.rec.takeovers[0], 'takeover on A');
        expect(t).toEqual({ clientId: 'c1', owner: owner('A', 1), by: owner('B', 2) });
        // Also when the owner is on the claiming node.
        const again = await b!.router.claimSession('c1', owner('B', 3, 1), false);
        expect(again.previous).toEqual(owner('B', 2));
        const t2 = await b!.rec.until(() => b!.rec.takeovers[0], 'takeover on B');
        expect(t2).toEqual({ clientId: 'c1', owner: owner('B', 2), by: owner('B', 3, 1) });
        // The same connection claiming again displaces nobody.
        expect((await b!.router.claimSession('c1', owner('B', 3, 1), false)).previous).toBeUndefined();
        await fence(b!, a!);
        expect(a!.rec.takeovers).toHaveLength(1);
        expect(b!.rec.takeovers).toHaveLength(1);
      });

      it('handOver signals reach the named node, with the session state', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.claimSession('c1', owner('A', 1), false);
        await b!.router.claimSession('c1', owner('B', 2), false);
        const t = await a!.rec.until(() => a!.rec.takeovers[0], 'takeover on A');
        const s = session('c1');
        await a!.router.enqueue('c1', [msg('q/1')], 10); // no stored session yet: dropped
        await a!.router.saveSession(s);
        await a!.router.enqueue('c1', [msg('q/2')], 10);
        await b!.router.addRoute('h/+');
        const published = a!.router.publish(msg('h/1'));
        await a!.router.handOver('B', { step: 'state', clientId: 'c1', to: t.by, from: t.owner, session: s });
        await published;
        const h = await b!.rec.until(() => b!.rec.handovers[0], 'handover on B');
        // (After the message on one Redis; Redis Cluster may deliver the two through different nodes.)
        await b!.rec.until(() => b!.rec.delivered('h/1')[0], 'the message on B');
        expect([h.step, h.clientId, h.to, h.from]).toEqual(['state', 'c1', owner('B', 2), owner('A', 1)]);
        expect(plainSession(h.session!)).toEqual(plainSession(s));
        // The queue enqueued before the signal is there for the claimer.
        expect((await b!.router.takeQueue('c1')).map((m) => m.topic)).toEqual(['q/2']);
        await b!.router.handOver('A', { step: 'resumed', clientId: 'c1', to: t.by, from: t.owner, clean: false });
        await a!.router.handOver('B', { step: 'tail', clientId: 'c1', to: t.by, from: t.owner });
        expect((await a!.rec.until(() => a!.rec.handovers[0], 'resumed on A')).step).toBe('resumed');
        expect((await b!.rec.until(() => b!.rec.handovers[1], 'tail on B')).step).toBe('tail');
        expect(a!.rec.handovers).toHaveLength(1);
      });

      it('adoptSession takes only a stored session nobody owns', async () => {
        const [a, b] = await nodes('A', 'B');
        expect(await a!.router.adoptSession('none', owner('A', 0))).toBeNull();
        await a!.router.claimSession('c1', owner('A', 1), false);
        await a!.router.saveSession(session('c1'));
        // Owned: not adopted, and the owner is not told anything.
        expect(await b!.router.adoptSession('c1', owner('B', 0))).toBeNull();
        await a!.router.releaseSession('c1', owner('A', 1));
        expect(plainSession((await b!.router.adoptSession('c1', owner('B', 0)))!)).toEqual(plainSession(session('c1')));
        expect(await a!.router.adoptSession('c1', owner('A', 0))).toBeNull();
        expect(await a!.router.offlineSessions()).toEqual([]);
        // The adopter is an owner like any other: a claim displaces it and tells its node.
        expect((await a!.router.claimSession('c1', owner('A', 2), false)).previous).toEqual(owner('B', 0));
        await b!.rec.until(() => b!.rec.takeovers[0], 'takeover on B');
        expect(a!.rec.takeovers).toEqual([]);
      });

      it('of two concurrent claims, exactly one displaces the other', async () => {
        const [a, b] = await nodes('A', 'B');
        for (let i = 0; i < 10; i++) {
          const id = `race-${i}`;
          const [ca, cb] = await Promise.all([a!.router.claimSession(id, owner('A', i), false), b!.router.claimSession(id, owner('B', i), false)]);
          const displaced = [ca.previous, cb.previous].filter((p) => p !== undefined);
          expect(displaced).toHaveLength(1);
          expect([owner('A', i), owner('B', i)]).toContainEqual(displaced[0]);
        }
      });

      it('clean start discards the stored session and its queue [MQTT-3.1.2-4]', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.saveSession(session('c1'));
        await a!.router.enqueue('c1', [msg('q/1')], 10);
        const claim = await b!.router.claimSession('c1', owner('B', 1), true);
        expect(claim.stored).toBeUndefined();
        expect(await a!.router.takeQueue('c1')).toEqual([]);
        await b!.router.releaseSession('c1', owner('B', 1));
        expect(await a!.router.offlineSessions()).toEqual([]);
        expect((await a!.router.claimSession('c1', owner('A', 1), false)).stored).toBeUndefined();
      });

      it('releaseSession succeeds only for the current owner', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.claimSession('c1', owner('A', 1), false);
        await b!.router.claimSession('c1', owner('B', 1), false);
        // The displaced connection ending must not release the new one.
        expect(await a!.router.releaseSession('c1', owner('A', 1))).toBe(false);
        expect(await a!.router.releaseSession('c1', owner('B', 1, 9))).toBe(false);
        expect(await a!.router.releaseSession('c1', owner('B', 1))).toBe(true);
        expect(await b!.router.releaseSession('c1', owner('B', 1))).toBe(false);
        expect((await a!.router.claimSession('c1', owner('A', 2), false)).previous).toBeUndefined();
      });

      it('offlineSessions lists stored sessions not connected anywhere', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.saveSession(session('off'));
        await a!.router.claimSession('on', owner('A', 1), false);
        await a!.router.saveSession(session('on'));
        const ids = async () => (await b!.router.offlineSessions()).map((s) => s.clientId).sort();
        expect(await ids()).toEqual(['off']);
        expect(plainSession((await b!.router.offlineSessions())[0]!)).toEqual(plainSession(session('off')));
        await a!.router.releaseSession('on', owner('A', 1));
        expect(await ids()).toEqual(['off', 'on']);
        await b!.router.deleteSession('off');
        expect(await ids()).toEqual(['on']);
      });

      it('deleteSession drops the stored state and the queue', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.saveSession(session('c1'));
        await a!.router.enqueue('c1', [msg('q/1')], 10);
        await b!.router.deleteSession('c1');
        expect(await a!.router.takeQueue('c1')).toEqual([]);
        expect((await a!.router.claimSession('c1', owner('A', 1), false)).stored).toBeUndefined();
      });

      it('a stored session ends when its Session Expiry Interval has passed since disconnect (MQTT 5.0 §3.1.2.11.2)', async () => {
        const [a, b] = await nodes('A', 'B');
        const now = Date.now();
        await a!.router.saveSession(session('expired', { expiryInterval: 5, disconnectedAt: now - 10_000 }));
        await a!.router.saveSession(session('lasting', { expiryInterval: 60, disconnectedAt: now }));
        await a!.router.saveSession(session('forever', { expiryInterval: 0xffffffff, disconnectedAt: 1 }));
        expect((await b!.router.offlineSessions()).map((s) => s.clientId).sort()).toEqual(['forever', 'lasting']);
        expect(await b!.router.enqueue('expired', [msg('q')], 10)).toBe(1);
        expect((await b!.router.claimSession('expired', owner('B', 1), false)).stored).toBeUndefined();
        expect((await b!.router.claimSession('forever', owner('B', 2), false)).stored?.clientId).toBe('forever');
      });
    });

    describe('offline queue', () => {
      it('keeps order, holds at most limit messages, reports how many it dropped; takeQueue empties it', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.saveSession(session('c1'));
        const m = (i: number) => msg(`q/${i}`, Uint8Array.of(i, 0, 255), { qos: 1, expiresAt: 2_000_000_000_000 + i });
        expect(await a!.router.enqueue('c1', [m(1), m(2)], 4)).toBe(0);
        expect(await b!.router.enqueue('c1', [m(3), m(4), m(5)], 4)).toBe(1);
        expect(await b!.router.enqueue('c1', [m(6)], 4)).toBe(1);
        expect(await a!.router.enqueue('c1', [], 4)).toBe(0);
        expect((await b!.router.takeQueue('c1')).map(plain)).toEqual([m(1), m(2), m(3), m(4)].map(plain));
        expect(await a!.router.takeQueue('c1')).toEqual([]);
        expect(await a!.router.enqueue('c1', [m(7)], 4)).toBe(0);
        expect((await a!.router.takeQueue('c1')).map((x) => x.topic)).toEqual(['q/7']);
      });

      it('drops everything for a client without a stored session', async () => {
        const [a] = await nodes('A');
        expect(await a!.router.enqueue('nobody', [msg('q/1'), msg('q/2')], 10)).toBe(2);
        expect(await a!.router.takeQueue('nobody')).toEqual([]);
      });
    });

    describe('wills', () => {
      it('willsOf lists the wills of clients on a node; claimWill takes one exactly once', async () => {
        const [a, b] = await nodes('A', 'B');
        const w1 = will('c1', owner('A', 1), { dueAt: 1_900_000_000_000 });
        await a!.router.setWill(w1);
        await a!.router.setWill(will('c2', owner('A', 2)));
        await b!.router.setWill(will('c3', owner('B', 1)));
        expect((await b!.router.willsOf('A')).map((w) => w.clientId).sort()).toEqual(['c1', 'c2']);
        expect((await a!.router.willsOf('B')).map((w) => w.clientId)).toEqual(['c3']);
        const claimed = await b!.router.claimWill('c1');
        expect(plainWill(claimed!)).toEqual(plainWill(w1));
        expect(await a!.router.claimWill('c1')).toBeNull();
        expect((await b!.router.willsOf('A')).map((w) => w.clientId)).toEqual(['c2']);
      });

      it('clearWill removes a will only for its owner, or for anyone when no owner is given', async () => {
        const [a] = await nodes('A');
        await a!.router.setWill(will('c1', owner('A', 1)));
        // A connection displaced by a takeover must not clear the new connection's will.
        expect(await a!.router.clearWill('c1', owner('A', 2))).toBe(false);
        expect(await a!.router.claimWill('c1')).not.toBeNull();
        await a!.router.setWill(will('c1', owner('A', 1)));
        expect(await a!.router.clearWill('c1', owner('A', 1))).toBe(true);
        expect(await a!.router.clearWill('c1', owner('A', 1))).toBe(false);
        await a!.router.setWill(will('c1', owner('A', 3)));
        expect(await a!.router.clearWill('c1')).toBe(true);
        expect(await a!.router.claimWill('c1')).toBeNull();
        expect(await a!.router.willsOf('A')).toEqual([]);
      });

      it('a will set again by a connection on another node moves to that node', async () => {
        const [a, b] = await nodes('A', 'B');
        await a!.router.setWill(will('c1', owner('A', 1)));
        await b!.router.setWill(will('c1', owner('B', 1)));
        expect(await a!.router.willsOf('A')).toEqual([]);
        expect((await a!.router.willsOf('B')).map((w) => w.owner)).toEqual([owner('B', 1)]);
      });

      it('of concurrent claims exactly one gets each will (2 nodes racing over 50 wills)', async () => {
        const [a, b] = await nodes('A', 'B');
        const ids = Array.from({ length: 50 }, (_, i) => `w${i}`);
        for (const id of ids) await a!.router.setWill(will(id, owner('A', 1)));
        const claims = await Promise.all(ids.flatMap((id) => [a!.router.claimWill(id), b!.router.claimWill(id)]));
        const won = claims.filter((w) => w !== null).map((w) => w.clientId);
        expect(won.sort()).toEqual([...ids].sort());
        expect(await b!.router.willsOf('A')).toEqual([]);
      });
    });
  });
}
