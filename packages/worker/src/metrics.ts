import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DISCONNECT_REASONS, DISCONNECT_REASON_NAMES, type DisconnectReason } from '@starling/core/disconnect-reasons.ts';
import { metric, type MetricJSON, type MetricSample } from '@starling/core/metric-json.ts';
import { limitMetrics } from './limits.ts';

export type DropCause = 'queue_full' | 'expired' | 'too_large' | 'no_route' | 'slow_consumer' | 'offline_qos0' | 'not_authorized';
export type ConnectResult =
  | 'accepted'
  | 'unsupported_protocol'
  | 'identifier_rejected'
  | 'keepalive_rejected'
  | 'bad_credentials'
  | 'not_authorized'
  | 'server_unavailable'
  | 'server_busy'
  | 'malformed';

export const CONNECT_RESULTS: readonly ConnectResult[] = [
  'accepted',
  'unsupported_protocol',
  'identifier_rejected',
  'keepalive_rejected',
  'bad_credentials',
  'not_authorized',
  'server_unavailable',
  'server_busy',
  'malformed',
];

/** This thread's start, epoch ms (a getter call each time if read from `performance`). */
const ORIGIN = performance.timeOrigin;

/** Epoch ms with sub-millisecond resolution, comparable across this process's threads. */
export function preciseNow(): number {
  return ORIGIN + performance.now();
}

/** The event-loop monitor's timer period; a sample is this period plus the loop's delay. */
const LOOP_RESOLUTION_MS = 10;

/** Seconds; publish-to-deliver within one node is sub-millisecond, across nodes a few ms. */
export const LATENCY_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** A histogram of plain numbers: observe() allocates nothing and takes no lock; exported when scraped. */
export class PlainHistogram {
  readonly bounds: readonly number[];
  /** Per bucket, not cumulative; the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Seconds since `since` (a preciseNow() value, possibly from another thread); never negative. */
  observeSince(since: number): void {
    const d = (preciseNow() - since) / 1000;
    this.observe(d > 0 ? d : 0);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  samples(name: string): MetricSample[] {
    const out: MetricSample[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i]!;
      out.push({ labels: { le: this.bounds[i]! }, value: cumulative, metricName: `${name}_bucket` });
    }
    out.push({ labels: { le: '+Inf' }, value: this.count, metricName: `${name}_bucket` });
    out.push({ labels: {}, value: this.sum, metricName: `${name}_sum` });
    out.push({ labels: {}, value: this.count, metricName: `${name}_count` });
    return out;
  }
}

function zeroed<K extends string>(keys: readonly K[]): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of keys) out[k] = 0;
  return out;
}

/**
 * Everything a worker counts, as plain numbers: counting a delivered message is an increment of a
 * field, no allocation, no message to another thread. Metrics are built from these only when asked.
 */
export class WorkerStats {
  readonly received: [number, number, number] = [0, 0, 0];
  readonly sent: [number, number, number] = [0, 0, 0];
  bytesIn = 0;
  bytesOut = 0;
  readonly dropped: Record<DropCause, number> = {
    queue_full: 0,
    expired: 0,
    too_large: 0,
    no_route: 0,
    slow_consumer: 0,
    offline_qos0: 0,
    not_authorized: 0,
  };
  readonly disconnects: Record<DisconnectReason, number> = zeroed(DISCONNECT_REASON_NAMES);
  readonly connects: Record<ConnectResult, number> = zeroed(CONNECT_RESULTS);
  takeovers = 0;
  readonly latency = new PlainHistogram(LATENCY_BUCKETS);
}

export interface Gauges {
  connections(): number;
  subscriptions(): number;
  sessionsConnected(): number;
  sessionsOffline(): number;
  inflight(): number;
  queued(): number;
}

/**
 * Metrics a worker owns. The main thread asks for them (collect) on a scrape or a $SYS tick and
 * aggregates every worker's with its own: counters and histograms summed, gauges with a `worker`
 * label kept apart.
 */
export class WorkerMetrics {
  readonly stats = new WorkerStats();
  /** prom-client-shaped entry points kept for the handlers; each is a field increment. */
  readonly connectAttempts: { inc(labels: { result: ConnectResult }): void };
  readonly takeovers: { inc(): void };
  /** The latency histogram; with metrics disabled a no-op, so delivery reads no extra clock. */
  readonly latency: { observeSince(since: number): void; observe(value: number): void };
  readonly enabled: boolean;
  private readonly worker: string;
  private readonly gauges: Gauges;
  /** Event-loop delay since the previous scrape; null when metrics are disabled. */
  private readonly loopDelay: ReturnType<typeof monitorEventLoopDelay> | null;

  constructor(workerId: number, gauges: Gauges, enabled = true) {
    const stats = this.stats;
    this.worker = String(workerId);
    this.gauges = gauges;
    this.connectAttempts = { inc: (labels) => void stats.connects[labels.result]++ };
    this.takeovers = { inc: () => void stats.takeovers++ };
    this.enabled = enabled;
    this.latency = enabled ? stats.latency : { observeSince() {}, observe() {} };
    this.loopDelay = enabled ? monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS }) : null;
    this.loopDelay?.enable();
  }

  /** Receive stamp for bytes read at `now` (Date.now()): sub-millisecond when metrics are on. */
  stamp(now: number): number {
    return this.enabled ? preciseNow() : now;
  }

  disconnected(reason: DisconnectReason): void {
    this.stats.disconnects[reason]++;
  }

  /**
   * This worker's metrics in prom-client's JSON form. `eventLoop` false leaves out (and does not
   * reset) the event-loop lag, for readers other than the Prometheus scrape ($SYS).
   */
  collect(eventLoop = true): MetricJSON[] {
    const s = this.stats;
    const g = this.gauges;
    const worker = this.worker;
    const byQos = (counts: readonly number[]): MetricSample[] => counts.map((value, q) => ({ labels: { qos: String(q) }, value }));
    const out: MetricJSON[] = [
      metric(
        'starling_connection_attempts_total',
        'CONNECT packets handled, by result: accepted or the reason it was refused.',
        'counter',
        CONNECT_RESULTS.map((result) => ({ labels: { result }, value: s.connects[result] })),
      ),
      metric(
        'starling_disconnects_total',
        'Connection ends by reason and initiator (client, server, network).',
        'counter',
        DISCONNECT_REASON_NAMES.map((reason) => ({ labels: { reason, initiator: DISCONNECT_REASONS[reason].initiator }, value: s.disconnects[reason] })),
      ),
      metric('starling_session_takeovers_total', 'Sessions taken over by a new connection with the same client id.', 'counter', [{ labels: {}, value: s.takeovers }]),
      metric('starling_messages_received_total', 'PUBLISH packets received from clients, by QoS.', 'counter', byQos(s.received)),
      metric('starling_messages_sent_total', 'PUBLISH packets sent to clients, by QoS.', 'counter', byQos(s.sent)),
      metric(
        'starling_messages_dropped_total',
        'Messages not delivered, by cause.',
        'counter',
        Object.entries(s.dropped).map(([cause, value]) => ({ labels: { cause }, value })),
      ),
      metric('starling_received_bytes_total', 'Bytes read from client sockets.', 'counter', [{ labels: {}, value: s.bytesIn }]),
      metric('starling_sent_bytes_total', 'Bytes written to client sockets.', 'counter', [{ labels: {}, value: s.bytesOut }]),
      metric(
        'starling_publish_deliver_latency_seconds',
        'Time from receiving a PUBLISH to writing it to the first subscriber on each worker.',
        'histogram',
        s.latency.samples('starling_publish_deliver_latency_seconds'),
      ),
      metric('starling_connections', 'Open client connections, per worker.', 'gauge', [{ labels: { worker }, value: g.connections() }]),
      metric('starling_subscriptions', 'Subscriptions held by sessions.', 'gauge', [{ labels: {}, value: g.subscriptions() }]),
      metric('starling_sessions', 'Sessions by state: connected, or offline and persistent.', 'gauge', [
        { labels: { state: 'connected' }, value: g.sessionsConnected() },
        { labels: { state: 'offline' }, value: g.sessionsOffline() },
      ]),
      metric('starling_inflight_messages', 'Outbound QoS 1/2 messages awaiting acknowledgement.', 'gauge', [{ labels: {}, value: g.inflight() }]),
      metric('starling_queued_messages', 'Messages queued for sessions (offline, or in-flight window full).', 'gauge', [{ labels: {}, value: g.queued() }]),
    ];
    out.push(...limitMetrics());
    if (eventLoop && this.loopDelay) {
      const p99 = Math.max(0, (this.loopDelay.percentile(99) / 1e6 - LOOP_RESOLUTION_MS) / 1000);
      this.loopDelay.reset();
      out.push(
        metric('starling_event_loop_lag_seconds', 'Event-loop delay per worker (p99 since the previous scrape).', 'gauge', [
          { labels: { worker }, value: Number.isFinite(p99) ? p99 : 0 },
        ]),
      );
    }
    return out;
  }
}
