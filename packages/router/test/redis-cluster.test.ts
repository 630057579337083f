// The contract again, on a three-master Redis Cluster: the hash tag keeps every script's keys in one
// slot, and pub/sub reaches subscribers on any master.

import { afterAll, beforeAll } from 'vitest';
import { RedisRouter } from '../src/redis-router.ts';
import { runRouterContract } from './router-contract.ts';
import { RedisClusterServers } from './redis-server.ts';

let cluster: RedisClusterServers;
let prefixes = 0;

beforeAll(async () => {
  cluster = await RedisClusterServers.start(3);
}, 30_000);

afterAll(async () => {
  await cluster?.kill();
});

runRouterContract('RedisRouter on Redis Cluster', async () => {
  const prefix = `cluster-${process.pid}-${++prefixes}:`;
  const routers: RedisRouter[] = [];
  return {
    node(id: string) {
      const router = new RedisRouter({ nodeId: id, cluster: cluster.nodes, keyPrefix: prefix, heartbeatMs: 100, nodeTtlMs: 1000 });
      routers.push(router);
      return router;
    },
    async close() {
      await Promise.all(routers.map((r) => r.close()));
    },
  };
});
