// Types that cross module, thread and file boundaries (worker messages, result JSON).

export type ScenarioName =
  | 'fan-in'
  | 'fan-out'
  | 'pairs'
  | 'cluster'
  | 'latency'
  | 'connect-storm'
  | 'idle';

export const SCENARIOS: readonly ScenarioName[] = [
  'fan-in',
  'fan-out',
  'pairs',
  'cluster',
  'latency',
  'connect-storm',
  'idle',
];

export type Qos = 0 | 1 | 2;
/** MQTT protocol level as it appears in CONNECT: 4 = 3.1.1, 5 = 5.0. */
export type ProtocolVersion = 4 | 5;
/** How publishers and subscribers are wired for the messaging scenarios. */
export type Pattern = 'fan-in' | 'fan-out' | 'pairs';

export interface Endpoint {
  host: string;
  port: number;
}

/** Everything a single scenario run needs; produced by args.ts with per-scenario defaults. */
export interface RunOptions {
  scenario: ScenarioName;
  /** Publishers (and connect-storm / idle clients) connect here. */
  pubUrl: Endpoint;
  /** Subscribers connect here; differs from pubUrl only for `cluster`. */
  subUrl: Endpoint;
  protocol: ProtocolVersion;
  qos: Qos;
  /** Payload bytes per PUBLISH. */
  size: number;
  publishers: number;
  subscribers: number;
  pattern: Pattern;
  /** Max unacknowledged QoS>0 PUBLISHes per publisher. */
  inflight: number;
  /** Total messages per second over all publishers; 0 = as fast as the broker takes them. */
  rate: number;
  warmup: number;
  duration: number;
  /** Hard cap on messages published in the whole run (warmup included). */
  maxMessages: number;
  workers: number;
  keepalive: number;
  /** connect-storm / idle: number of connections. */
  connections: number;
  /** connect-storm / idle: handshakes in progress at once (over all workers). */
  concurrency: number;
  /** connect-storm / idle: connections per second over all workers; 0 = unbounded. */
  connectRate: number;
  /** connect-storm: keep connections open until the end instead of disconnecting each one. */
  keep: boolean;
  /** idle: seconds to wait before/after connecting so broker memory settles. */
  settle: number;
  /** idle: each idle client also holds one subscription. */
  idleSubscribe: boolean;
  /** Run-unique tag put into client ids and topics. */
  runTag: string;
}

export interface LatencySummary {
  count: number;
  /** All values in microseconds. */
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface ProcSample {
  /** CPU seconds (user+system) consumed over the window, summed over the process tree. */
  cpuSeconds: number;
  /** cpuSeconds / window seconds: 1.0 = one core fully busy. */
  cores: number;
  rssStartKb: number;
  rssEndKb: number;
  rssPeakKb: number;
}

export interface ScenarioResult {
  scenario: ScenarioName;
  /** The options the run used (endpoints included). */
  options: RunOptions;
  startedAt: string;
  /** Seconds the measured window actually lasted. */
  windowSec: number;
  /** Main metric for charts and ratios, with its unit and direction. */
  primary: { name: string; value: number; unit: string; higherIsBetter: boolean };
  metrics: Record<string, number>;
  latency?: LatencySummary;
  /** The generator's own CPU over the window (all its threads). */
  generator: {
    cpuSeconds: number;
    cores: number;
    workers: number;
    /** CPU share of each load worker thread over the window (1.0 = thread saturated). */
    threads: number[];
  };
  broker?: ProcSample;
  /** Whole-machine CPU busy share over the window, 0..1 of all cores. */
  machineBusy: number;
  machineCores: number;
  /**
   * Cores busy during the window that were neither the generator nor the broker: other work on
   * a shared machine. Large values mean the numbers are not trustworthy.
   */
  otherCores: number;
  /** Machine busy share (0..1) measured just before the run, with no load from us. */
  backgroundBusy?: number;
  /** Best guess at what capped the number: see limitedBy() in scenarios/bottleneck.ts. */
  limitedBy: string;
  errors: string[];
}
