// A cluster of real broker processes sharing one real redis-server (test/cluster-*.test.ts).
// Each cluster gets its own key prefix, so several clusters (one per test) can share a redis-server.
import { mkdirSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { beforeEach } from 'vitest';
import { RedisServer } from '../../packages/router/test/redis-server.ts';
import { startBroker, type BrokerProcess, type LogLine } from './broker.ts';
import { connectClient, uniqueId } from './clients.ts';
import { metricValue, scrape } from './metrics.ts';

export { RedisServer };

/** Heartbeats fast enough for tests: a dead node is noticed within about 2.5 s. */
export const FAST_MEMBERSHIP = ['--redis.heartbeatMs', '500', '--redis.nodeTtlMs', '2000'];

let prefixes = 0;

export function freshPrefix(): string {
  return `t${process.pid}-${++prefixes}-${Math.random().toString(36).slice(2, 6)}:`;
}

export interface ClusterNodeOptions {
  nodeId: string;
  redisUrl: string;
  keyPrefix: string;
  workers?: number;
  args?: string[];
  env?: Record<string, string>;
}

export function nodeArgs(o: ClusterNodeOptions): string[] {
  return ['--nodeId', o.nodeId, '--redis.url', o.redisUrl, '--redis.keyPrefix', o.keyPrefix, '--sys.intervalMs', '0', ...FAST_MEMBERSHIP, ...(o.args ?? [])];
}

/** Starts one node; resolves when it listens (its router started, so it is a member). */
export function startNode(o: ClusterNodeOptions): Promise<BrokerProcess> {
  return startBroker({ workers: o.workers ?? 2, args: nodeArgs(o), env: o.env, logLevel: 'debug' });
}

export interface Cluster {
  readonly redis: RedisServer;
  readonly keyPrefix: string;
  readonly nodes: Map<string, BrokerProcess>;
  /** Every process started, restarted ones' previous lives included. */
  readonly all: BrokerProcess[];
  node(id: string): BrokerProcess;
  /** Starts (or restarts) a node of this cluster under id. */
  start(id: string, opts?: { workers?: number; args?: string[] }): Promise<BrokerProcess>;
  stop(): Promise<void>;
}

/**
 * Starts nodes one after another: each one's snapshot at start holds every earlier node, and the earlier
 * ones hear its registration, so every node knows every other one when this resolves.
 */
export async function startCluster(redis: RedisServer, ids: string[], opts: { workers?: number; args?: string[] } = {}): Promise<Cluster> {
  const keyPrefix = freshPrefix();
  const nodes = new Map<string, BrokerProcess>();
  const all: BrokerProcess[] = [];
  const cluster: Cluster = {
    redis,
    keyPrefix,
    nodes,
    all,
    node(id) {
      const n = nodes.get(id);
      if (!n) throw new Error(`no node ${id}`);
      return n;
    },
    async start(id, o = {}) {
      const broker = await startNode({ nodeId: id, redisUrl: redis.url, keyPrefix, workers: o.workers ?? opts.workers, args: [...(opts.args ?? []), ...(o.args ?? [])] });
      nodes.set(id, broker);
      all.push(broker);
      return broker;
    },
    async stop() {
      await Promise.all([...nodes.values()].map((n) => n.stop('SIGTERM').catch(() => undefined)));
    },
  };
  try {
    for (const id of ids) await cluster.start(id);
    await waitForNodes([...nodes.values()], ids.length);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Polls a node's metrics until pred holds (bounded: there is no event to await across processes). */
export async function waitForMetric(node: BrokerProcess, name: string, pred: (v: number) => boolean, timeoutMs = 15_000, labels: Record<string, string> = {}): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = Number.NaN;
  for (let i = 0; ; i++) {
    last = metricValue(await scrape(node.metricsPort), name, labels);
    if (pred(last)) return last;
    if (Date.now() > deadline) throw new Error(`${name} on port ${node.metricsPort} is ${last} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, Math.min(50 * (i + 1), 250)));
  }
}

export async function metric(node: BrokerProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue(await scrape(node.metricsPort), name, labels);
}

/** Every node sees `count` live nodes (itself included). */
export async function waitForNodes(nodes: BrokerProcess[], count: number, timeoutMs = 15_000): Promise<void> {
  await Promise.all(nodes.map((n) => waitForMetric(n, 'starling_cluster_nodes', (v) => v === count, timeoutMs)));
}

/** Log lines that must never appear in a healthy run, whatever happened to Redis or other nodes. */
export function fatalLines(node: BrokerProcess): LogLine[] {
  return node.logs.filter((l) => l.msg === 'unhandled rejection' || l.msg === 'crash recovery failed' || l.level >= 60 || /uncaught/i.test(l.msg));
}

/** Ends clients without waiting on brokers that may be gone. */
export async function endClients(clients: MqttClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
}

/**
 * An `mqtt` client with Nagle off: request/response loops (PUBACK then UNSUBSCRIBE) otherwise stall on
 * the kernel's delayed ACK for ~40 ms a round.
 */
export async function nodeClient(node: BrokerProcess, opts: IClientOptions = {}, setup?: (c: MqttClient) => void): Promise<MqttClient> {
  if (!setup) {
    const c = await connectClient(node.port, { protocolVersion: 5, clientId: uniqueId('cl'), ...opts });
    (c.stream as unknown as Socket).setNoDelay?.(true);
    return c;
  }
  // `setup` runs before any packet is read: messages a resumed session gets right after CONNACK can
  // arrive in the same read, and the client emits them before an awaited connect could attach a listener.
  const c = mqtt.connect(`mqtt://127.0.0.1:${node.port}`, { protocolVersion: 5, clientId: uniqueId('cl'), reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  setup(c);
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
  (c.stream as unknown as Socket).setNoDelay?.(true);
  return c;
}

/**
 * When a test of the calling file fails, writes every node's log lines (as the broker printed them) to
 * $TMPDIR/starling-cluster-logs/<test>/<node>.log and says where: cross-process failures are hard to
 * read from an assertion alone.
 */
export function keepLogsOnFailure(nodes: () => Iterable<BrokerProcess>): void {
  beforeEach(({ onTestFailed, task }) => {
    onTestFailed(async () => {
      const dir = path.join(tmpdir(), 'starling-cluster-logs', `${task.name.replace(/[^\w.-]+/g, '_').slice(0, 80)}-${process.pid}`);
      mkdirSync(dir, { recursive: true });
      let i = 0;
      for (const n of nodes()) {
        const id = String(n.logs.find((l) => l.msg === 'starling listening')?.nodeId ?? `node${i}`);
        const file = path.join(dir, `${id}-${i++}`);
        writeFileSync(`${file}.log`, [...n.logs.map((l) => JSON.stringify(l)), ...n.stderr].join('\n') + '\n');
        if (n.child.exitCode === null && n.child.signalCode === null && n.metricsPort > 0) {
          const text = await scrape(n.metricsPort).catch((err: Error) => `scrape failed: ${err.message}`);
          writeFileSync(`${file}.metrics`, text);
        }
      }
      console.error(`cluster node logs: ${dir}`);
    });
  });
}
