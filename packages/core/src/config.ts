// One configuration schema for file, environment and flags, validated at start-up (fail fast, name the field).
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { aclSelectorShape, authSchema, securityLimitsShape } from './auth/config.ts';
import { transportsShape } from './transports/config.ts';

const port = z.number().int().min(0).max(65535);
const positiveMs = z.number().int().min(1);

const aclRule = z.object({
  action: z.enum(['publish', 'subscribe', 'all']),
  topic: z.string().min(1),
  allow: z.boolean(),
  ...aclSelectorShape,
});

export const configSchema = z.object({
  /** Node id in a cluster; defaults to the Kubernetes pod name (HOSTNAME) or the host name. */
  nodeId: z.string().min(1).default(process.env.POD_NAME || process.env.HOSTNAME || os.hostname()),
  host: z.string().default('0.0.0.0'),
  port: port.default(1883),
  /** Session worker threads. 2 measured best on a 2-core machine (docs/architecture.md). */
  workers: z.number().int().min(1).max(256).default(Math.max(1, os.availableParallelism())),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  metrics: z
    .object({
      /** false: /metrics answers 404 and nothing is sampled; /healthz and /readyz stay on metrics.port. */
      enabled: z.boolean().default(true),
      host: z.string().default('0.0.0.0'),
      port: port.default(9100),
    })
    .prefault({}),
  timeouts: z
    .object({
      /** From accept to a complete CONNECT; independent of keepalive. */
      connectMs: positiveMs.default(10_000),
      /** Bound on SIGTERM/SIGINT: after it the process exits even if clients linger. */
      shutdownMs: positiveMs.default(10_000),
      /** On SIGTERM/SIGINT: /readyz answers 503 and new connections are refused for this long before
       *  clients are disconnected (lets a load balancer take the node out first). 0: at once. */
      drainMs: z.number().int().min(0).default(0),
      /** Kernel TCP keepalive probe delay on accepted sockets (catches half-open peers). */
      tcpKeepAliveMs: positiveMs.default(60_000),
      /** A worker's answer to a control request (session claim, retained lookup). */
      requestMs: positiveMs.default(10_000),
      /** After the broker ends a connection, how long the peer has to close its side before the socket
       *  is destroyed (a half-open peer never acknowledges the FIN). */
      closeGraceMs: positiveMs.default(1000),
    })
    .prefault({}),
  keepalive: z
    .object({
      /** Largest keepalive a client may use (s). v5 clients above it get Server Keep Alive; v3 get CONNACK 0x02. */
      maxSeconds: z.number().int().min(1).max(65535).default(65535),
      /** Whether keepalive 0 (no keepalive) is accepted. */
      allowZero: z.boolean().default(true),
    })
    .prefault({}),
  limits: z
    .object({
      /** Largest packet accepted from or sent to a client, bytes (v5 Maximum Packet Size). */
      maxPacketSize: z.number().int().min(64).max(268_435_455).default(268_435_455),
      /** Receive Maximum the broker announces: inbound QoS 1/2 in flight per client. */
      receiveMaximum: z.number().int().min(1).max(65535).default(65535),
      /** Outbound QoS 1/2 in flight per client (also capped by the client's Receive Maximum). */
      maxInflight: z.number().int().min(1).max(65535).default(1000),
      /** Queued QoS 1/2 messages per session (offline or window full); overflow is dropped and counted. */
      maxQueued: z.number().int().min(0).default(10_000),
      /** Topic Alias Maximum the broker announces for client-to-broker aliases. */
      topicAliasMaximum: z.number().int().min(0).max(65535).default(65535),
      /** Largest Session Expiry Interval granted (s). */
      maxSessionExpiry: z.number().int().min(0).max(0xffffffff).default(0xffffffff),
      /** Bytes buffered for a socket before QoS 0 messages to it are dropped (slow subscriber). */
      maxSocketBuffer: z.number().int().min(1024).default(4 * 1024 * 1024),
      /** How long a backed-up subscriber may slow its publishers down before it is treated as slow. */
      slowConsumerMs: z.number().int().min(1).default(5000),
      ...securityLimitsShape,
    })
    .prefault({}),
  mqtt: z
    .object({
      maximumQoS: z.union([z.literal(0), z.literal(1), z.literal(2)]).default(2),
      retainAvailable: z.boolean().default(true),
      /** What a v3.1.1 PUBLISH refused by authorization gets: silently dropped, or the connection closed. */
      v3DeniedPublish: z.enum(['drop', 'disconnect']).default('drop'),
    })
    .prefault({}),
  sys: z
    .object({
      /** How often $SYS/broker/... statistics are published (retained, node-local); 0 disables them. */
      intervalMs: z
        .number()
        .int()
        .min(0)
        .default(10_000)
        .refine((v) => v === 0 || v >= 100, { message: 'must be 0 (disabled) or at least 100 ms' }),
    })
    .prefault({}),
  /** Cluster mode: set `url`, `sentinels` + `name`, or `cluster` to share routes and sessions in Redis. */
  redis: z
    .object({
      /** `redis://[user:pass@]host:port[/db]`; `rediss://` for TLS. */
      url: z.string().min(1).optional(),
      sentinels: z.array(z.object({ host: z.string().min(1), port })).min(1).optional(),
      /** Sentinel master name. */
      name: z.string().min(1).optional(),
      /** Redis Cluster seed nodes. */
      cluster: z.array(z.object({ host: z.string().min(1), port })).min(1).optional(),
      /** Overrides the URL's password (e.g. from a Kubernetes Secret via STARLING_REDIS__PASSWORD). */
      password: z.string().optional(),
      username: z.string().optional(),
      /** TLS to Redis (also implied by a rediss:// URL). */
      tls: z.boolean().default(false),
      keyPrefix: z.string().min(1).default('starling:'),
      heartbeatMs: positiveMs.default(1000),
      /** A node silent for this long is dead: its routes are removed and its wills published. */
      nodeTtlMs: positiveMs.default(5000),
      commandTimeoutMs: positiveMs.default(5000),
    })
    .prefault({})
    .refine((r) => !r.sentinels || r.name, { message: 'redis.sentinels needs redis.name (the master name)', path: ['name'] }),
  /** Topic authorization: the first matching rule wins; no match allows. The default refuses nothing. */
  acl: z.array(aclRule).default([]),
  /** What no matching ACL rule means: 'deny' makes the rules an allow-list ($SYS included). */
  aclDefault: z.enum(['allow', 'deny']).default('allow'),
  auth: authSchema,
  ...transportsShape,
  /** For tests only: fault injection. Never set in production. */
  debug: z
    .object({
      /**
       * A PUBLISH to exactly this topic makes the receiving worker throw an uncaught exception outside any
       * handler (a worker crash, to test recovery: wills, respawn, session re-homing). Absent by default.
       */
      crashOnTopic: z.string().min(1).optional(),
    })
    .prefault({}),
});

export type Config = z.infer<typeof configSchema>;
export type AclRule = z.infer<typeof aclRule>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** STARLING_TIMEOUTS__CONNECT_MS=500 → { timeouts: { connectMs: 500 } }. */
function fromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(env)) {
    if (!key.startsWith('STARLING_') || key === 'STARLING_CONFIG' || raw === undefined) continue;
    const path = key
      .slice(9)
      .split('__')
      .map((p) => p.toLowerCase().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()));
    setPath(out, path, coerce(raw));
    rawStrings.set(path.join('.'), raw);
  }
  return out;
}

/** --timeouts.connectMs 500, --port=1884, --acl '[...]' */
function fromArgs(argv: string[]): { values: Record<string, unknown>; configFile?: string } {
  const values: Record<string, unknown> = {};
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') continue; // `pnpm start -- --port 1884` passes the separator through
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument "${arg}" (flags look like --port 1883)`);
    let [name, value] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    if (value === undefined) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) value = 'true';
      else value = argv[++i]!;
    }
    if (name === 'config') configFile = value;
    else {
      setPath(values, name.split('.'), coerce(value));
      rawStrings.set(name, value);
    }
  }
  return { values, configFile };
}

/** The text of every value from the environment or flags, by path: a string field that received a
 *  numeric-looking value (a password "123456") gets its text back instead of failing validation. */
const rawStrings = new Map<string, string>();

function coerce(raw: string): unknown {
  const trimmed = raw.trim();
  if (/^-?\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  if (trimmed === 'true' || trimmed === 'false') return trimmed === 'true';
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return raw;
    }
  }
  return raw;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path.at(-1)!] = value;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isObject(v) && isObject(out[k]) ? merge(out[k], v) : v;
  return out;
}

function readFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  const parsed: unknown = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  if (parsed == null) return {};
  if (!isObject(parsed)) throw new ConfigError(`config file ${path} must contain an object`);
  return parsed;
}

/** Dotted paths of keys the schema does not know, at any depth (zod strips them silently otherwise). */
function unknownKeys(schema: z.ZodType, value: unknown, path: string[], out: string[]): void {
  type Def = { type: string; innerType?: z.ZodType; in?: z.ZodType; shape?: Record<string, z.ZodType>; element?: z.ZodType };
  let def = (schema as unknown as { def: Def }).def;
  while (def.innerType || def.type === 'pipe') def = ((def.innerType ?? def.in) as unknown as { def: Def }).def;
  if (def.type === 'object' && isObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      const field = def.shape![k];
      if (!field) out.push([...path, k].join('.'));
      else unknownKeys(field, v, [...path, k], out);
    }
  } else if (def.type === 'array' && Array.isArray(value)) {
    value.forEach((v, i) => unknownKeys(def.element!, v, [...path, String(i)], out));
  }
}

function getPath(target: unknown, path: PropertyKey[]): unknown {
  let node = target;
  for (const key of path) node = isObject(node) ? node[key as string] : undefined;
  return node;
}

/** Validates a raw object against the schema; the error names every bad field and what it allows. */
export function parseConfig(raw: unknown): Config {
  const unknown: string[] = [];
  unknownKeys(configSchema, raw, [], unknown);
  if (unknown.length > 0) throw new ConfigError(`invalid configuration:\n${unknown.map((k) => `  ${k}: unknown key`).join('\n')}`);
  let result = configSchema.safeParse(raw);
  if (!result.success && isObject(raw)) {
    // A string field given a numeric-looking value from env/flags: retry with the text as written.
    let patched = false;
    for (const issue of result.error.issues) {
      const text = rawStrings.get(issue.path.join('.'));
      if (issue.code === 'invalid_type' && issue.expected === 'string' && text !== undefined && typeof getPath(raw, issue.path) !== 'string') {
        setPath(raw, issue.path.map(String), text);
        patched = true;
      }
    }
    if (patched) result = configSchema.safeParse(raw);
  }
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const field = issue.path.join('.') || '(root)';
    return `  ${field}: ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
}

/** Precedence: defaults < file (--config or STARLING_CONFIG) < environment < flags. */
export function loadConfig(argv: string[] = process.argv.slice(2), env: NodeJS.ProcessEnv = process.env): Config {
  rawStrings.clear();
  const args = fromArgs(argv);
  const file = args.configFile ?? env.STARLING_CONFIG;
  const fromFile = file ? readFile(file) : {};
  return parseConfig(merge(merge(fromFile, fromEnv(env)), args.values));
}
