import { MemoryRouter, RedisRouter, type Router } from '@starling/router';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';

/** Redis when configured (cluster mode), memory otherwise (one node, no Redis needed). */
export function createRouter(config: Config, log: Logger): Router {
  const r = config.redis;
  if (!r.url && !r.sentinels && !r.cluster) return new MemoryRouter({ nodeId: config.nodeId });
  return new RedisRouter({
    nodeId: config.nodeId,
    url: r.url,
    sentinels: r.sentinels,
    name: r.name,
    cluster: r.cluster,
    keyPrefix: r.keyPrefix,
    heartbeatMs: r.heartbeatMs,
    nodeTtlMs: r.nodeTtlMs,
    commandTimeoutMs: r.commandTimeoutMs,
    redisOptions: {
      ...(r.password !== undefined ? { password: r.password } : {}),
      ...(r.username !== undefined ? { username: r.username } : {}),
      ...(r.tls ? { tls: {} } : {}),
    },
    logger: log,
  });
}
