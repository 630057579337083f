// $SYS/broker/... statistics, published by the hub every sys.intervalMs as retained QoS 0 messages.
// Node-local: each node publishes its own numbers to its own subscribers and keeps them as retained
// there (never in the shared router, so nodes do not overwrite each other's). Names follow mosquitto's
// where one exists, so existing dashboards and `mosquitto_sub -t '$SYS/#'` read them.
// A `#` or `+/...` subscription does not match them [MQTT-4.7.2-1]; `$SYS/#` does.
import type { Message } from '@starling/router';
import type { Logger } from './logger.ts';
import { sampleSum, type MetricJSON } from './metric-json.ts';
import { STARLING_VERSION } from './version.ts';

export const SYS_PREFIX = '$SYS/broker/';

export interface SysSource {
  /** The node's metrics, summed across workers (without event-loop sampling). */
  collect(): Promise<MetricJSON[]>;
  /** Publishes a message to this node's subscribers, kept as retained on this node. */
  publish(message: Message): void;
}

/** Topic (under $SYS/broker/) → payload, from one collection of the node's metrics. */
export function sysStatistics(metrics: readonly MetricJSON[], uptimeSeconds: number): Array<[string, string]> {
  const sum = (name: string, labels?: Record<string, string>) => sampleSum(metrics, name, labels);
  const connected = sum('starling_sessions', { state: 'connected' });
  const offline = sum('starling_sessions', { state: 'offline' });
  const stats: Array<[string, number | string]> = [
    ['version', `starling version ${STARLING_VERSION}`],
    ['uptime', `${Math.floor(uptimeSeconds)} seconds`],
    ['clients/connected', connected],
    ['clients/disconnected', offline],
    ['clients/total', connected + offline],
    ['messages/received', sum('starling_messages_received_total')],
    ['messages/sent', sum('starling_messages_sent_total')],
    ['publish/messages/received', sum('starling_messages_received_total')],
    ['publish/messages/sent', sum('starling_messages_sent_total')],
    ['publish/messages/dropped', sum('starling_messages_dropped_total')],
    ['bytes/received', sum('starling_received_bytes_total')],
    ['bytes/sent', sum('starling_sent_bytes_total')],
    ['subscriptions/count', sum('starling_subscriptions')],
    ['retained messages/count', sum('starling_retained_messages')],
    ['messages/inflight', sum('starling_inflight_messages')],
    ['messages/queued', sum('starling_queued_messages')],
  ];
  return stats.map(([topic, value]) => [SYS_PREFIX + topic, String(value)]);
}

/** Publishes the statistics on an interval; each topic only when its value changed (uptime always does). */
export class SysTopics {
  private readonly intervalMs: number;
  private readonly source: SysSource;
  private readonly log: Logger;
  private readonly startedAt = Date.now();
  private readonly published = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(opts: { intervalMs: number; source: SysSource; log: Logger }) {
    this.intervalMs = opts.intervalMs;
    this.source = opts.source;
    this.log = opts.log;
  }

  /** First publication now (so a subscriber finds them retained from the start), then every interval. */
  start(): void {
    if (this.intervalMs === 0 || this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
    void this.tick();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One publication round; a round still collecting when the next is due makes that one skip. */
  async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const metrics = await this.source.collect();
      if (!this.timer) return; // stopped meanwhile
      const now = Date.now();
      for (const [topic, value] of sysStatistics(metrics, (now - this.startedAt) / 1000)) {
        if (this.published.get(topic) === value) continue;
        this.published.set(topic, value);
        this.source.publish({ topic, payload: Buffer.from(value), qos: 0, retain: true, origin: '', receivedAt: performance.timeOrigin + performance.now() });
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, '$SYS publication failed');
    } finally {
      this.busy = false;
    }
  }
}
