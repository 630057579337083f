import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisRouter } from '../src/redis-router.ts';
import type { RedisRouterOptions, RedisRouterStatus } from '../src/redis-router.ts';
import type { Message } from '../src/types.ts';
import { Recorder, runRouterContract } from './router-contract.ts';
import { RedisServer } from './redis-server.ts';

let server: RedisServer;
let prefixes = 0;

beforeAll(async () => {
  server = await RedisServer.start();
});

afterAll(async () => {
  await server?.kill();
});

/** A fresh key space, so tests never see each other's state. */
function freshPrefix(kind: string): string {
  return `${kind}-${process.pid}-${++prefixes}:`;
}

function routerOptions(nodeId: string, keyPrefix: string, extra: Partial<RedisRouterOptions> = {}): RedisRouterOptions {
  return { nodeId, url: server.url, keyPrefix, heartbeatMs: 100, nodeTtlMs: 1000, ...extra };
}

runRouterContract('RedisRouter', async () => {
  const prefix = freshPrefix('contract');
  const routers: RedisRouter[] = [];
  return {
    node(id: string) {
      const router = new RedisRouter(routerOptions(id, prefix));
      routers.push(router);
      return router;
    },
    async close() {
      await Promise.all(routers.map((r) => r.close()));
    },
  };
});

function msg(topic: string, payload = 'x'): Message {
  return { topic, payload: new Uint8Array(Buffer.from(payload)), qos: 1, retain: false, origin: 'test', receivedAt: Date.now() };
}

function statusWhere(router: RedisRouter, test: (s: RedisRouterStatus) => boolean, what: string, timeoutMs = 5000): Promise<void> {
  if (test(router.status)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      router.off('status', check);
      reject(new Error(`timed out waiting for ${what}`));
    }, timeoutMs);
    const check = (s: RedisRouterStatus) => {
      if (!test(s)) return;
      clearTimeout(timer);
      router.off('status', check);
      resolve();
    };
    router.on('status', check);
  });
}

describe('RedisRouter on Redis', () => {
  const routers: RedisRouter[] = [];

  afterEach(async () => {
    await Promise.all(routers.splice(0).map((r) => r.close()));
  });

  async function start(options: RedisRouterOptions): Promise<{ router: RedisRouter; rec: Recorder }> {
    const router = new RedisRouter(options);
    routers.push(router);
    const rec = new Recorder();
    await router.start(rec);
    return { router, rec };
  }

  it('batches the messages of one event-loop turn into one PUBLISH per target node', async () => {
    const prefix = freshPrefix('batch');
    const a = await start(routerOptions('A', prefix));
    const b = await start(routerOptions('B', prefix));
    const c = await start(routerOptions('C', prefix));
    await b.router.addRoute('batch/+');
    await c.router.addRoute('batch/#');
    const before = a.router.status;
    await Promise.all(Array.from({ length: 100 }, (_, i) => a.router.publish(msg(`batch/${i}`, String(i)))));
    const after = a.router.status;
    expect(after.batchesOut - before.batchesOut).toBe(2);
    expect(after.messagesOut - before.messagesOut).toBe(200);
    await b.rec.until(() => (b.rec.deliveries.length === 100 ? true : undefined), '100 deliveries on B');
    // Order within a node's stream is kept.
    expect(b.rec.deliveries.map((d) => d.message.topic)).toEqual(Array.from({ length: 100 }, (_, i) => `batch/${i}`));
    expect(b.router.status.messagesIn).toBe(100);
    // A large turn is split into frames of about 1 MiB, in order.
    const big = new Uint8Array(300_000).fill(1);
    const frames = a.router.status.batchesOut;
    await Promise.all(Array.from({ length: 10 }, (_, i) => a.router.publish({ ...msg(`batch/big${i}`), payload: big })));
    expect(a.router.status.batchesOut - frames).toBe(2 * 3);
    await b.rec.until(() => (b.rec.deliveries.length === 110 ? true : undefined), '10 big deliveries on B');
    expect(b.rec.deliveries.slice(100).map((d) => [d.message.topic, d.message.payload.length])).toEqual(Array.from({ length: 10 }, (_, i) => [`batch/big${i}`, 300_000]));
  });

  it('detects a dead node within its TTL: exactly one survivor reaps it (nodeDown), its routes and owners go', async () => {
    const prefix = freshPrefix('dead');
    const ttl = 600;
    const opts = (id: string) => routerOptions(id, prefix, { heartbeatMs: 100, nodeTtlMs: ttl });
    const a = await start(opts('A'));
    const c = await start(opts('C'));
    const b = await start(opts('B'));
    await b.router.addRoute('dead/+');
    await b.router.claimSession('cb', { nodeId: 'B', workerId: 0, connId: 1 }, false);
    await b.router.saveSession({ clientId: 'cb', protocolVersion: 4, subscriptions: {}, expiryInterval: 0xffffffff, inflight: [], inboundQos2: [] });
    await b.router.setWill({ clientId: 'cb', owner: { nodeId: 'B', workerId: 0, connId: 1 }, message: msg('will/cb') });
    expect(a.router.hasRemoteRoute('dead/1')).toBe(true);

    const killedAt = Date.now();
    b.router.kill();
    const survivors = [a, c];
    await Promise.race(survivors.map((s) => s.rec.until(() => (s.rec.downs.includes('B') ? true : undefined), 'nodeDown(B)')));
    const elapsed = Date.now() - killedAt;
    // The heartbeat expires ttl after the last beat; a survivor notices at its next beat.
    expect(elapsed).toBeLessThan(ttl + 3 * 100 + 500);
    for (const s of survivors) {
      await s.rec.until(() => s.rec.changes.find((ch) => ch.filter === 'dead/+' && !ch.present), 'routesChanged(dead/+, false)');
      expect(s.router.hasRemoteRoute('dead/1')).toBe(false);
    }
    expect([...a.rec.downs, ...c.rec.downs]).toEqual(['B']);
    // The wills are left for the reaper to claim and publish; the session is offline now.
    expect((await a.router.willsOf('B')).map((w) => w.clientId)).toEqual(['cb']);
    expect((await a.router.offlineSessions()).map((s) => s.clientId)).toEqual(['cb']);
    expect(a.router.status.liveNodes).toBe(1);
  });

  it('a node restarting under the same id clears what its previous life left and is told about its wills', async () => {
    const prefix = freshPrefix('restart');
    const a = await start(routerOptions('A', prefix));
    const b = await start(routerOptions('B', prefix));
    const ownerB = { nodeId: 'B', workerId: 1, connId: 7 };
    await b.router.addRoute('old/+');
    await b.router.claimSession('cb', ownerB, false);
    await b.router.saveSession({ clientId: 'cb', protocolVersion: 5, subscriptions: {}, expiryInterval: 60, inflight: [], inboundQos2: [] });
    await b.router.setWill({ clientId: 'cb', owner: ownerB, message: msg('will/cb') });
    b.router.kill();

    const b2 = await start(routerOptions('B', prefix));
    await a.rec.until(() => a.rec.changes.find((ch) => ch.filter === 'old/+' && !ch.present), 'old routes dropped');
    expect(a.router.hasRemoteRoute('old/x')).toBe(false);
    expect((await a.router.offlineSessions()).map((s) => s.clientId)).toEqual(['cb']);
    await b2.rec.until(() => (b2.rec.downs.includes('B') ? true : undefined), 'nodeDown(B) on the new life');
    expect((await b2.router.claimWill('cb'))?.owner).toEqual(ownerB);
    // The new life routes as usual.
    await b2.router.addRoute('new/+');
    await a.router.publish(msg('new/1'));
    await b2.rec.until(() => (b2.rec.delivered('new/1').length ? true : undefined), 'delivery to the new life');
  });

  it('a node declared dead while it was cut off registers again when it hears of it', async () => {
    const prefix = freshPrefix('evicted');
    const a = await start(routerOptions('A', prefix));
    const b = await start(routerOptions('B', prefix));
    await a.router.addRoute('ev/+');
    expect(b.router.hasRemoteRoute('ev/1')).toBe(true);
    // Do what a reaper does (as if A had been unreachable past its TTL).
    const tag = `{${prefix.slice(0, -1)}}:`;
    const check = new Redis(server.url);
    try {
      await check.multi().srem(`${tag}members`, 'A').del(`${tag}routes:A`).publish(`${prefix}routes`, JSON.stringify({ t: 'down', n: 'A', s: 0, by: 'X' })).exec();
      await b.rec.until(() => b.rec.changes.filter((ch) => ch.filter === 'ev/+').length === 3 ? true : undefined, 'ev/+ gone and back on B');
      expect(b.rec.changes.filter((ch) => ch.filter === 'ev/+').map((ch) => ch.present)).toEqual([true, false, true]);
      expect(b.router.hasRemoteRoute('ev/1')).toBe(true);
      expect(await check.smembers(`${tag}routes:A`)).toEqual(['\u0000ev/+']);
      expect((await check.smembers(`${tag}members`)).sort()).toEqual(['A', 'B']);
    } finally {
      check.disconnect();
    }
  });

  it('survives a Redis outage: fails fast while down, registers its routes again when Redis is back', async () => {
    const own = await RedisServer.start();
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const prefix = freshPrefix('outage');
      const opts = (id: string) => ({ ...routerOptions(id, prefix), url: own.url });
      const a = await start(opts('A'));
      const b = await start(opts('B'));
      await b.router.addRoute('o/+');
      await a.router.publish(msg('o/1'));
      await b.rec.until(() => (b.rec.delivered('o/1').length ? true : undefined), 'delivery before the outage');

      await own.kill();
      await statusWhere(a.router, (s) => !s.connected, 'A disconnected');
      await statusWhere(b.router, (s) => !s.connected, 'B disconnected');
      const t0 = Date.now();
      await expect(a.router.publish(msg('o/2'))).rejects.toThrow(/unavailable/);
      await expect(a.router.getRetained('o/#')).rejects.toThrow();
      await expect(b.router.addRoute('o2/+')).rejects.toThrow();
      await expect(a.router.claimSession('c', { nodeId: 'A', workerId: 0, connId: 1 }, false)).rejects.toThrow();
      expect(Date.now() - t0).toBeLessThan(500);
      // Routing decisions keep answering from the replica.
      expect(a.router.hasRemoteRoute('o/3')).toBe(true);
      expect(a.router.status.commandErrors).toBeGreaterThan(0);

      await own.launch();
      await statusWhere(a.router, (s) => s.connected, 'A reconnected');
      await statusWhere(b.router, (s) => s.connected, 'B reconnected');
      // o2/+ was added while Redis was down: the intent survives and is registered on reconnection.
      await a.rec.until(() => (a.router.hasRemoteRoute('o2/x') && a.router.hasRemoteRoute('o/x') ? true : undefined), 'routes of B registered again', 5000);
      const check = new Redis(own.url);
      try {
        expect((await check.smembers(`{${prefix.slice(0, -1)}}:routes:B`)).sort()).toEqual(['\u0000o/+', '\u0000o2/+']);
        expect((await check.smembers(`{${prefix.slice(0, -1)}}:members`)).sort()).toEqual(['A', 'B']);
      } finally {
        check.disconnect();
      }
      await a.router.publish(msg('o/4'));
      await b.rec.until(() => (b.rec.delivered('o/4').length ? true : undefined), 'delivery after the outage');
      expect(a.router.status.reconnects).toBe(1);
      await a.router.setRetained({ ...msg('o/r', 'kept'), retain: true });
      expect((await b.router.getRetained('o/r')).length).toBe(1);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await Promise.all(routers.splice(0).map((r) => r.close()));
      await own.kill();
    }
    expect(unhandled).toEqual([]);
  });

  it('puts every key under one hash tag (Redis Cluster slot) and nothing outside it', async () => {
    const own = await RedisServer.start();
    try {
      const prefix = 'tagged:';
      const opts = (id: string) => ({ ...routerOptions(id, prefix), url: own.url });
      const a = await start(opts('A'));
      const b = await start(opts('B'));
      const ownerA = { nodeId: 'A', workerId: 0, connId: 1 };
      await a.router.addRoute('t/+');
      await b.router.addRoute('t/#', 'g');
      await a.router.setRetained({ ...msg('t/r'), retain: true });
      await a.router.claimSession('c1', ownerA, false);
      await a.router.saveSession({ clientId: 'c1', protocolVersion: 5, subscriptions: {}, expiryInterval: 60, disconnectedAt: Date.now(), inflight: [], inboundQos2: [] });
      await a.router.enqueue('c1', [msg('t/q')], 10);
      await a.router.setWill({ clientId: 'c1', owner: ownerA, message: msg('will') });
      const check = new Redis(own.url);
      try {
        const keys = await check.keys('*');
        const kinds = new Set<string>();
        for (const key of keys) {
          // Redis Cluster hashes only the part between the first '{' and the next '}' [cluster spec].
          const open = key.indexOf('{');
          const close = key.indexOf('}', open + 1);
          expect([key, open, key.slice(open + 1, close)]).toEqual([key, 0, 'tagged']);
          kinds.add(key.slice(close + 2).split(':')[0]!);
        }
        expect([...kinds].sort()).toEqual(['hb', 'members', 'node-sessions', 'node-wills', 'queue', 'retained', 'routes', 'sess', 'sessions', 'will']);
      } finally {
        check.disconnect();
      }
    } finally {
      await Promise.all(routers.splice(0).map((r) => r.close()));
      await own.kill();
    }
  });

  it('authenticates with the password in the URL; a wrong one fails start()', async () => {
    const own = await RedisServer.start({ args: ['--requirepass', 's3cret'] });
    try {
      const prefix = freshPrefix('auth');
      const url = `redis://:s3cret@127.0.0.1:${own.port}/0`;
      const a = await start({ ...routerOptions('A', prefix), url });
      const b = await start({ ...routerOptions('B', prefix), url });
      await b.router.addRoute('auth/+');
      await a.router.publish(msg('auth/1'));
      await b.rec.until(() => (b.rec.delivered('auth/1').length ? true : undefined), 'delivery');
      const wrong = new RedisRouter({ ...routerOptions('C', prefix), url: `redis://:nope@127.0.0.1:${own.port}`, connectTimeoutMs: 2000 });
      await expect(wrong.start(new Recorder())).rejects.toThrow(/WRONGPASS/);
    } finally {
      await Promise.all(routers.splice(0).map((r) => r.close()));
      await own.kill();
    }
  });

  it('connects over TLS with a rediss:// URL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'starling-tls-'));
    const certFile = join(dir, 'cert.pem');
    const keyFile = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const own = await RedisServer.start({ tls: { certFile, keyFile } });
    try {
      const prefix = freshPrefix('tls');
      const opts = (id: string): RedisRouterOptions => ({
        ...routerOptions(id, prefix),
        url: `rediss://127.0.0.1:${own.port}`,
        redisOptions: { tls: { ca: readFileSync(certFile) } },
      });
      const a = await start(opts('A'));
      const b = await start(opts('B'));
      await b.router.addRoute('tls/+');
      await a.router.publish(msg('tls/1'));
      await b.rec.until(() => (b.rec.delivered('tls/1').length ? true : undefined), 'delivery over TLS');
    } finally {
      await Promise.all(routers.splice(0).map((r) => r.close()));
      await own.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('addRoute waits for a node that stopped answering only up to routeAckTimeoutMs, and counts it', async () => {
    const prefix = freshPrefix('acktimeout');
    const a = await start(routerOptions('A', prefix, { routeAckTimeoutMs: 200, nodeTtlMs: 5000 }));
    const b = await start(routerOptions('B', prefix, { nodeTtlMs: 5000 }));
    await a.router.addRoute('ack/1');
    expect(a.router.status.routeAckTimeouts).toBe(0);
    b.router.kill(); // its heartbeat stays for 5 s: A still counts it alive
    const t0 = Date.now();
    await a.router.addRoute('ack/2');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(a.router.status.routeAckTimeouts).toBe(1);
  });

  it('a throwing handler loses neither the rest of a batch nor the router', async () => {
    const prefix = freshPrefix('throwing');
    const a = await start(routerOptions('A', prefix));
    const rec = new Recorder();
    const router = new RedisRouter(routerOptions('B', prefix));
    routers.push(router);
    await router.start({
      ...rec,
      deliver: (m, groups, normal) => {
        if (m.topic === 'boom') throw new Error('handler bug');
        rec.deliver(m, groups, normal);
      },
      takeover: () => {},
      routesChanged: () => {
        throw new Error('handler bug');
      },
    });
    await router.addRoute('#');
    await a.router.addRoute('a/+'); // B's routesChanged throws while applying this
    await Promise.all([a.router.publish(msg('boom')), a.router.publish(msg('after'))]);
    await rec.until(() => (rec.delivered('after').length ? true : undefined), 'delivery after the throwing one');
    expect(router.hasRemoteRoute('a/1')).toBe(true);
  });

  it('start() rejects when Redis is unreachable', async () => {
    const router = new RedisRouter({ nodeId: 'A', url: 'redis://127.0.0.1:1', connectTimeoutMs: 300 });
    await expect(router.start(new Recorder())).rejects.toThrow(/not ready|ended/);
    await router.close();
  });
});
