import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { addMonotonic, monotonicOnly, type MetricJSON } from './metric-json.ts';
import { STARLING_VERSION } from './version.ts';

/** Metrics owned by the main thread; merged with every worker's registry into one scrape. */
export class HubMetrics {
  readonly registry = new Registry();
  readonly willsPublished: Counter<'cause'>;
  readonly connectionsRefused: Counter<'reason'>;
  /** Same series as the workers' starling_disconnects_total (summed at scrape): ends the main thread
   *  classifies itself, i.e. the connections of a crashed worker (reason worker_crash). */
  readonly disconnects: Counter<'reason' | 'initiator'>;

  /** Each live worker's latest answer, and what workers that are gone had counted. */
  private readonly lastSeen = new Map<number, MetricJSON[]>();
  private readonly retired: MetricJSON[] = [];

  /** `enabled` false (metrics.enabled): no process metrics are sampled; the rest is read only on request. */
  constructor(read: { workerRestarts: () => number; retained: () => Promise<number>; ready: () => boolean; workers: () => number }, enabled = true) {
    const registers = [this.registry];
    // starling_process_cpu_seconds_total, starling_nodejs_heap_size_used_bytes, … (main thread's heap and loop).
    if (enabled) collectDefaultMetrics({ register: this.registry, prefix: 'starling_' });
    new Gauge({ name: 'starling_build_info', help: 'Always 1; the version label tells the running version.', labelNames: ['version'], registers }).set({ version: STARLING_VERSION }, 1);
    this.willsPublished = new Counter({ name: 'starling_wills_published_total', help: 'Will messages published, by cause.', labelNames: ['cause'], registers });
    for (const cause of ['connection_lost', 'worker_crash', 'node_down']) this.willsPublished.inc({ cause }, 0);
    this.disconnects = new Counter({
      name: 'starling_disconnects_total',
      help: 'Connection ends by reason and initiator (client, server, network).',
      labelNames: ['reason', 'initiator'],
      registers,
    });
    this.connectionsRefused = new Counter({
      name: 'starling_connections_refused_total',
      help: 'Sockets refused before MQTT (no worker ready, connection limit, shutting down).',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['no_worker', 'shutting_down']) this.connectionsRefused.inc({ reason }, 0);
    new Counter({
      name: 'starling_worker_restarts_total',
      help: 'Session workers restarted after a crash.',
      registers,
      collect() {
        this.reset();
        this.inc(read.workerRestarts());
      },
    });
    new Gauge({
      name: 'starling_retained_messages',
      help: 'Retained messages stored.',
      registers,
      async collect() {
        this.set(await read.retained());
      },
    });
    new Gauge({ name: 'starling_ready', help: '1 while the node accepts connections.', registers, collect() { this.set(read.ready() ? 1 : 0); } });
    new Gauge({ name: 'starling_workers', help: 'Session worker threads running.', registers, collect() { this.set(read.workers()); } });
  }

  /**
   * The whole node: this registry plus every worker's answer (null: it did not answer, so its last
   * counters stand in), plus what workers that are gone had counted. Counters and histograms are summed
   * across threads; gauges with a `worker` label stay apart.
   */
  async collect(answers: ReadonlyMap<number, MetricJSON[] | null>): Promise<Registry> {
    // Only this thread has each of its own metrics: 'sum' is the identity, where prom-client's defaults
    // would 'omit' (process start time) or 'average' (event-loop percentiles) them.
    const own = ((await this.registry.getMetricsAsJSON()) as unknown as MetricJSON[]).map((m) => ({ ...m, aggregator: 'sum' as const }));
    const parts: MetricJSON[][] = [own, this.retired];
    for (const [workerId, json] of answers) {
      if (json) this.lastSeen.set(workerId, json);
      const use = json ?? monotonicOnly(this.lastSeen.get(workerId) ?? []);
      parts.push(use);
    }
    return AggregatorRegistry.aggregate(parts as never);
  }

  /** A worker is gone (crash): what it counted up to its last answer stays in the node's counters. */
  workerGone(workerId: number): void {
    const last = this.lastSeen.get(workerId);
    this.lastSeen.delete(workerId);
    if (last) addMonotonic(this.retired, last);
  }
}
