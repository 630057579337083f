import { Counter, Gauge, type Registry } from 'prom-client';
import { RedisRouter, type Router } from '@starling/router';

/** Router health for operators in cluster mode: Redis reachable, errors, cross-node traffic, node count. */
export function registerClusterMetrics(registry: Registry, router: Router): void {
  if (!(router instanceof RedisRouter)) return;
  const registers = [registry];
  const status = () => router.status;
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  new Gauge({ name: 'starling_redis_connected', help: '1 while the router reaches Redis.', registers, collect() { this.set(status().connected ? 1 : 0); } });
  new Gauge({ name: 'starling_cluster_nodes', help: 'Live nodes in the cluster, this one included.', registers, collect() { this.set(status().liveNodes + 1); } });
  counter('starling_redis_errors_total', 'Router operations that failed because of Redis.', () => status().commandErrors);
  counter('starling_redis_reconnects_total', 'Times the Redis connection came back after a loss.', () => status().reconnects);
  counter('starling_cluster_messages_in_total', 'Messages delivered to this node by other nodes.', () => status().messagesIn);
  counter('starling_cluster_messages_out_total', 'Messages sent to other nodes (one per target node).', () => status().messagesOut);
  counter('starling_cluster_batches_out_total', 'Redis PUBLISH commands carrying messages to other nodes.', () => status().batchesOut);
  counter('starling_cluster_route_ack_timeouts_total', 'Route changes not acknowledged by every live node in time.', () => status().routeAckTimeouts);
}
