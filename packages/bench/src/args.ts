// Command-line parsing and per-scenario defaults. Hand-rolled rather than util.parseArgs because
// compare specs reuse the same option names inline ("pairs:qos=1,publishers=20").

import { randomBytes } from 'node:crypto';
import { SCENARIOS, type Endpoint, type Pattern, type RunOptions, type ScenarioName } from './types.ts';

export type Flags = Record<string, string | true>;

export interface Cli {
  positionals: string[];
  flags: Flags;
  /** Repeatable options (--broker-cmd). */
  repeated: Record<string, string[]>;
}

const REPEATABLE = new Set(['broker-cmd']);
const BOOLEAN = new Set(['keep', 'idle-subscribe', 'json', 'quiet', 'help', 'no-report']);

export function parseCli(argv: string[]): Cli {
  const cli: Cli = { positionals: [], flags: {}, repeated: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') continue; // `pnpm bench -- x` may pass the separator through
    if (!a.startsWith('--')) {
      cli.positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    let value: string | true;
    if (eq > 0) value = a.slice(eq + 1);
    else if (BOOLEAN.has(name)) value = true;
    else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new Error(`--${name} needs a value`);
      value = next;
      i++;
    }
    if (REPEATABLE.has(name)) (cli.repeated[name] ??= []).push(String(value));
    else cli.flags[name] = value;
  }
  return cli;
}

/** "latency:rate=2000,qos=1" -> scenario and inline flags. */
export function parseSpec(spec: string): { scenario: ScenarioName; flags: Flags; id: string } {
  const [name, rest] = spec.split(':', 2) as [string, string | undefined];
  if (!SCENARIOS.includes(name as ScenarioName)) throw new Error(`unknown scenario '${name}' (${SCENARIOS.join(', ')})`);
  const flags: Flags = {};
  for (const kv of (rest ?? '').split(',').filter(Boolean)) {
    const eq = kv.indexOf('=');
    if (eq < 0) flags[kv] = true;
    else flags[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return { scenario: name as ScenarioName, flags, id: spec };
}

/** Defaults that differ per scenario; everything else comes from BASE. */
const SCENARIO_DEFAULTS: Record<ScenarioName, Partial<RunOptions>> = {
  'fan-in': { publishers: 10, subscribers: 1 },
  'fan-out': { publishers: 1, subscribers: 10 },
  pairs: { publishers: 10, subscribers: 10 },
  cluster: { publishers: 10, subscribers: 10, pattern: 'pairs' },
  latency: { publishers: 1, subscribers: 1, pattern: 'pairs', rate: 5000, duration: 10 },
  'connect-storm': { connections: 5000, concurrency: 100 },
  idle: { connections: 10000, concurrency: 200 },
};

const BASE: Omit<RunOptions, 'scenario' | 'pubUrl' | 'subUrl' | 'runTag'> = {
  protocol: 4,
  qos: 0,
  size: 64,
  publishers: 10,
  subscribers: 1,
  pattern: 'pairs',
  inflight: 100,
  rate: 0,
  warmup: 2,
  duration: 5,
  maxMessages: 50_000_000,
  workers: 2,
  keepalive: 60,
  connections: 1000,
  concurrency: 100,
  connectRate: 0,
  keep: false,
  settle: 3,
  idleSubscribe: false,
};

export function parseEndpoint(url: string): Endpoint {
  const u = new URL(url.includes('://') ? url : `mqtt://${url}`);
  if (u.protocol !== 'mqtt:' && u.protocol !== 'tcp:') throw new Error(`only mqtt:// (plain TCP) is supported: ${url}`);
  return { host: u.hostname || '127.0.0.1', port: u.port ? Number(u.port) : 1883 };
}

function num(flags: Flags, name: string, fallback: number, min = 0): number {
  const v = flags[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, got '${String(v)}'`);
  return n;
}

function bool(flags: Flags, name: string, fallback: boolean): boolean {
  const v = flags[name];
  if (v === undefined) return fallback;
  return v === true || v === 'true' || v === '1';
}

/** Flags of a later layer override earlier ones: CLI-wide flags, then inline spec flags. */
export function buildRunOptions(scenario: ScenarioName, ...layers: Flags[]): RunOptions {
  const f: Flags = Object.assign({}, ...layers);
  const d = { ...BASE, ...SCENARIO_DEFAULTS[scenario] };
  const url = parseEndpoint(String(f.url ?? 'mqtt://127.0.0.1:1883'));
  const pubUrl = f['pub-url'] ?? f['url-a'];
  const subUrl = f['sub-url'] ?? f['url-b'];
  if (scenario === 'cluster' && (!pubUrl || !subUrl)) throw new Error('cluster needs --url-a <publisher node> and --url-b <subscriber node>');
  const mqtt = String(f.mqtt ?? '3.1.1');
  if (mqtt !== '3.1.1' && mqtt !== '5' && mqtt !== '5.0') throw new Error(`--mqtt must be 3.1.1 or 5, got ${mqtt}`);
  const qos = num(f, 'qos', d.qos);
  if (qos !== 0 && qos !== 1 && qos !== 2) throw new Error('--qos must be 0, 1 or 2');
  const pattern = String(f.pattern ?? d.pattern) as Pattern;
  if (!['fan-in', 'fan-out', 'pairs'].includes(pattern)) throw new Error('--pattern must be fan-in, fan-out or pairs');
  const o: RunOptions = {
    scenario,
    pubUrl: pubUrl ? parseEndpoint(String(pubUrl)) : url,
    subUrl: subUrl ? parseEndpoint(String(subUrl)) : url,
    protocol: mqtt === '3.1.1' ? 4 : 5,
    qos,
    size: num(f, 'size', d.size),
    publishers: num(f, 'publishers', num(f, 'pairs', d.publishers, 1), 1),
    subscribers: num(f, 'subscribers', d.subscribers, 1),
    pattern,
    inflight: Math.min(32767, num(f, 'inflight', d.inflight, 1)),
    rate: num(f, 'rate', d.rate),
    warmup: num(f, 'warmup', d.warmup),
    duration: num(f, 'duration', d.duration, 0.1),
    maxMessages: num(f, 'max-messages', d.maxMessages, 1),
    workers: num(f, 'workers', d.workers, 1),
    keepalive: num(f, 'keepalive', d.keepalive),
    connections: num(f, 'connections', d.connections, 1),
    concurrency: num(f, 'concurrency', d.concurrency, 1),
    connectRate: num(f, 'connect-rate', d.connectRate),
    keep: bool(f, 'keep', d.keep),
    settle: num(f, 'settle', d.settle),
    idleSubscribe: bool(f, 'idle-subscribe', d.idleSubscribe),
    runTag: randomBytes(4).toString('hex').slice(0, 6),
  };
  if (scenario === 'latency' && o.rate <= 0) throw new Error('latency needs --rate > 0');
  if (scenario === 'latency' && o.size < 8) throw new Error('latency needs --size >= 8 (the payload carries a timestamp)');
  return o;
}
