// Redis clients for the router: one for commands, one subscribed to the router's channels.

import { Cluster, Redis } from 'ioredis';
import type { ClusterOptions, RedisOptions } from 'ioredis';
import { scripts } from './redis-scripts.ts';
import type { ScriptName } from './redis-scripts.ts';

export type RedisClient = Redis | Cluster;
export type ScriptArg = string | Buffer | number;

export interface RedisConnectionOptions {
  /** `redis://[user:pass@]host:port[/db]`; `rediss://` for TLS. */
  url?: string;
  /** Redis Sentinel: the sentinels and the master's name. */
  sentinels?: Array<{ host: string; port: number }>;
  name?: string;
  /** Redis Cluster seed nodes. */
  cluster?: Array<{ host: string; port: number }>;
  /** Passed to ioredis as is (password, username, tls, db, ...); wins over what the URL says. */
  redisOptions?: RedisOptions;
  /** A command without a reply for this long fails, so a hung Redis cannot stall the broker. */
  commandTimeoutMs?: number;
}

export function createClient(o: RedisConnectionOptions, connectionName: string, role: 'command' | 'subscriber'): RedisClient {
  // Fail fast while Redis is away: no offline queue, no retrying of unanswered commands. The broker must
  // not acknowledge a publish that was not routed, and must not pile up commands during an outage.
  const common: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (times) => Math.min(times * 100, 1000),
    connectionName,
    ...(role === 'command' ? { commandTimeout: o.commandTimeoutMs ?? 5000, enableAutoPipelining: true } : {}),
    ...o.redisOptions,
  };
  let client: RedisClient;
  if (o.cluster) {
    const clusterOptions: ClusterOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      enableAutoPipelining: role === 'command',
      clusterRetryStrategy: (times) => Math.min(times * 100, 1000),
      redisOptions: common,
    };
    client = new Cluster(o.cluster, clusterOptions);
  } else if (o.sentinels) {
    client = new Redis({ ...common, sentinels: o.sentinels, name: o.name ?? 'mymaster' });
  } else if (o.url) {
    client = new Redis(o.url, common);
  } else {
    client = new Redis({ host: '127.0.0.1', port: 6379, ...common });
  }
  if (role === 'command') for (const [name, def] of Object.entries(scripts)) client.defineCommand(name, def);
  return client;
}

/** Runs a script defined by createClient. Arguments go as one array: ioredis flattens it, and a spread of
 *  many thousand routes would overflow the call stack. */
export function runScript(client: RedisClient, name: ScriptName, keys: string[], args: ScriptArg[]): Promise<unknown> {
  const fn = (client as unknown as Record<string, (args: ScriptArg[]) => Promise<unknown>>)[name]!;
  return fn.call(client, [...keys, ...args]);
}

/** Connects and resolves once the client is ready; rejects after timeoutMs (ioredis retries meanwhile). */
export function connectClient(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    let lastError: unknown;
    const onError = (err: unknown) => {
      lastError = err;
      // An error reply while connecting (wrong password, unknown user) will not heal by retrying.
      if ((err as { name?: string } | null)?.name === 'ReplyError') done(err as Error);
    };
    const done = (err?: Error) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('end', onEnd);
      client.off('error', onError);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const onEnd = () => done(new Error(`redis connection ended: ${String(lastError ?? 'closed')}`));
    const timer = setTimeout(() => done(new Error(`redis not ready within ${timeoutMs} ms: ${String(lastError ?? 'no reply')}`)), timeoutMs);
    client.on('ready', onReady);
    client.once('end', onEnd);
    client.on('error', onError);
    if (client.status === 'wait') client.connect().catch(onError);
  });
}
