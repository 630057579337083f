import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DISCONNECT_REASONS, type DisconnectReason } from '@starling/core/disconnect-reasons.ts';

export type DropCause = 'queue_full' | 'expired' | 'too_large' | 'no_route' | 'slow_consumer' | 'offline_qos0' | 'not_authorized';
export type ConnectResult =
  | 'accepted'
  | 'unsupported_protocol'
  | 'identifier_rejected'
  | 'keepalive_rejected'
  | 'bad_credentials'
  | 'not_authorized'
  | 'server_unavailable'
  | 'malformed';

/**
 * Hot-path counts are plain numbers, turned into Prometheus metrics only when scraped: counting a
 * delivered message allocates nothing and crosses no thread.
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
}

export interface Gauges {
  connections(): number;
  subscriptions(): number;
  sessionsConnected(): number;
  sessionsOffline(): number;
  inflight(): number;
  queued(): number;
}

/** Metrics a worker owns. The main thread aggregates every worker's registry into one scrape. */
export class WorkerMetrics {
  readonly registry = new Registry();
  readonly stats = new WorkerStats();
  readonly disconnects: Counter<'reason' | 'initiator'>;
  readonly connectAttempts: Counter<'result'>;
  readonly takeovers: Counter;
  readonly latency: Histogram;
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 20 });

  constructor(workerId: number, gauges: Gauges) {
    const registers = [this.registry];
    const stats = this.stats;
    const worker = String(workerId);
    this.loopDelay.enable();
    const loopDelay = this.loopDelay;

    this.disconnects = new Counter({
      name: 'starling_disconnects_total',
      help: 'Connection ends by reason and initiator (client, server, network).',
      labelNames: ['reason', 'initiator'],
      registers,
    });
    // Zero every reason so dashboards and rate() see the series before the first occurrence.
    for (const [reason, info] of Object.entries(DISCONNECT_REASONS)) this.disconnects.inc({ reason, initiator: info.initiator }, 0);
    this.connectAttempts = new Counter({
      name: 'starling_connection_attempts_total',
      help: 'CONNECT packets handled, by result.',
      labelNames: ['result'],
      registers,
    });
    this.connectAttempts.inc({ result: 'accepted' }, 0);
    this.takeovers = new Counter({ name: 'starling_session_takeovers_total', help: 'Sessions taken over by a new connection with the same client id.', registers });
    this.latency = new Histogram({
      name: 'starling_publish_deliver_latency_seconds',
      help: 'Time from receiving a PUBLISH to writing it to the first subscriber.',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });

    // Counters only go up: on each scrape add what happened since the previous one.
    const synced = (name: string, help: string, label: string, read: () => Array<[string, number]>) => {
      const last = new Map<string, number>();
      return new Counter({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          for (const [value, total] of read()) {
            this.inc({ [label]: value }, total - (last.get(value) ?? 0));
            last.set(value, total);
          }
        },
      });
    };
    const byQos = (counts: number[]) => (): Array<[string, number]> => counts.map((v, q) => [String(q), v]);
    synced('starling_messages_received_total', 'PUBLISH packets received from clients, by QoS.', 'qos', byQos(stats.received));
    synced('starling_messages_sent_total', 'PUBLISH packets sent to clients, by QoS.', 'qos', byQos(stats.sent));
    synced('starling_messages_dropped_total', 'Messages not delivered, by cause.', 'cause', () => Object.entries(stats.dropped));
    new Counter({ name: 'starling_received_bytes_total', help: 'Bytes read from client sockets.', registers, collect() { this.reset(); this.inc(stats.bytesIn); } });
    new Counter({ name: 'starling_sent_bytes_total', help: 'Bytes written to client sockets.', registers, collect() { this.reset(); this.inc(stats.bytesOut); } });

    const gauge = (name: string, help: string, read: () => number, perWorker = false) =>
      new Gauge({
        name,
        help,
        labelNames: perWorker ? ['worker'] : [],
        registers,
        collect() {
          if (perWorker) this.set({ worker }, read());
          else this.set(read());
        },
      });
    gauge('starling_connections', 'Open client connections.', gauges.connections, true);
    gauge('starling_subscriptions', 'Subscriptions held by sessions.', gauges.subscriptions);
    new Gauge({
      name: 'starling_sessions',
      help: 'Sessions by state: connected, or offline and persistent.',
      labelNames: ['state'],
      registers,
      collect() {
        this.set({ state: 'connected' }, gauges.sessionsConnected());
        this.set({ state: 'offline' }, gauges.sessionsOffline());
      },
    });
    gauge('starling_inflight_messages', 'Outbound QoS 1/2 messages awaiting acknowledgement.', gauges.inflight);
    gauge('starling_queued_messages', 'Messages queued for sessions (offline or window full).', gauges.queued);
    gauge('starling_event_loop_lag_seconds', 'Event-loop delay (p99 since last scrape) per worker.', () => {
      const v = loopDelay.percentile(99) / 1e9;
      loopDelay.reset();
      return Number.isFinite(v) ? v : 0;
    }, true);
  }

  disconnected(reason: DisconnectReason): void {
    this.disconnects.inc({ reason, initiator: DISCONNECT_REASONS[reason].initiator });
  }
}
