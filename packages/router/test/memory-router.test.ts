import { MemoryCluster, MemoryRouter } from '../src/memory-router.ts';
import type { Router } from '../src/contract.ts';
import { runRouterContract } from './router-contract.ts';

runRouterContract('MemoryRouter', async () => {
  const cluster = new MemoryCluster();
  const routers: Router[] = [];
  return {
    node(id: string) {
      const router = new MemoryRouter({ nodeId: id, cluster });
      routers.push(router);
      return router;
    },
    async close() {
      await Promise.all(routers.map((r) => r.close()));
    },
  };
});
