import { afterAll, beforeAll } from 'vitest';
import { RedisRouter } from '../src/redis-router.ts';
import type { RedisRouterOptions } from '../src/redis-router.ts';
import { runRouterContract } from './router-contract.ts';
import { RedisServer } from './redis-server.ts';

let server: RedisServer;
let clusters = 0;

beforeAll(async () => {
  server = await RedisServer.start();
});

afterAll(async () => {
  await server?.kill();
});

function routerOptions(nodeId: string, keyPrefix: string, extra: Partial<RedisRouterOptions> = {}): RedisRouterOptions {
  return { nodeId, url: server.url, keyPrefix, heartbeatMs: 100, nodeTtlMs: 1000, ...extra };
}

runRouterContract('RedisRouter', async () => {
  // A fresh key space per cluster: tests never see each other's state.
  const prefix = `contract-${process.pid}-${++clusters}:`;
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
