// Per-client limits enforced on a worker: topic length and depth, subscriptions per session, publish
// rate and byte rate. Each refusal uses the spec's reason code and is counted
// (starling_limit_exceeded_total{limit}); rate overruns end the connection as quota_exceeded.
import type mqtt from 'mqtt-packet';
import { TokenBucket } from '@starling/core/auth/rate-limit.ts';
import { metric, type MetricJSON } from '@starling/core/metric-json.ts';
import type { Connection } from './connection.ts';
import type { Session } from './session.ts';

export type LimitKind = 'topic_length' | 'topic_levels' | 'subscriptions' | 'publish_rate' | 'publish_bytes';
const KINDS: readonly LimitKind[] = ['topic_length', 'topic_levels', 'subscriptions', 'publish_rate', 'publish_bytes'];

/** This worker's counts (one module instance per worker thread). */
export const limitStats: Record<LimitKind, number> = { topic_length: 0, topic_levels: 0, subscriptions: 0, publish_rate: 0, publish_bytes: 0 };

export function limitMetrics(): MetricJSON[] {
  return [
    metric(
      'starling_limit_exceeded_total',
      'Client requests refused by a configured limit (topic length/levels, subscriptions, publish rate/bytes).',
      'counter',
      KINDS.map((limit) => ({ labels: { limit }, value: limitStats[limit] })),
    ),
    ...extraMetricSources.flatMap((source) => source()),
  ];
}

/** The topic breaks limits.maxTopicLength / maxTopicLevels: which one, or null. */
export function topicLimit(conn: Connection, topic: string): LimitKind | null {
  const lim = conn.ctx.config.limits;
  if (lim.maxTopicLength < 65535 && Buffer.byteLength(topic) > lim.maxTopicLength) return 'topic_length';
  if (lim.maxTopicLevels > 0) {
    let levels = 1;
    for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 0x2f) levels++;
    if (levels > lim.maxTopicLevels) return 'topic_levels';
  }
  return null;
}

interface Rates {
  packets: TokenBucket | null;
  bytes: TokenBucket | null;
}
const rates = new WeakMap<Connection, Rates>();

/**
 * Checks an incoming PUBLISH against the limits. false: handled here (refused or connection closed),
 * the handler stops.
 */
export function admitPublish(conn: Connection, packet: mqtt.IPublishPacket, topic: string): boolean {
  const lim = conn.ctx.config.limits;
  if (lim.publishRatePerSecond > 0 || lim.publishBytesPerSecond > 0) {
    let r = rates.get(conn);
    if (!r) {
      r = {
        packets: lim.publishRatePerSecond > 0 ? new TokenBucket(lim.publishRatePerSecond) : null,
        bytes: lim.publishBytesPerSecond > 0 ? new TokenBucket(lim.publishBytesPerSecond) : null,
      };
      rates.set(conn, r);
    }
    const now = Date.now();
    const size = (packet.payload as Buffer | undefined)?.length ?? 0;
    const over: LimitKind | null = r.packets && !r.packets.take(1, now) ? 'publish_rate' : r.bytes && !r.bytes.take(size, now) ? 'publish_bytes' : null;
    if (over) {
      limitStats[over]++;
      conn.log.info({ limit: over }, 'publish rate exceeded');
      // v5: DISCONNECT 0x96 Message rate too high; v3: the connection is closed.
      conn.close('quota_exceeded', 0x96);
      return false;
    }
  }
  const broken = topicLimit(conn, topic);
  if (broken) {
    limitStats[broken]++;
    const id = packet.messageId ?? 0;
    if (conn.version === 5) {
      // 0x90 Topic Name invalid: well formed, not accepted by this server.
      if (packet.qos === 1) conn.send({ cmd: 'puback', messageId: id, reasonCode: 0x90 });
      else if (packet.qos === 2) conn.send({ cmd: 'pubrec', messageId: id, reasonCode: 0x90 });
    } else {
      // v3.1.1 has no negative ack: dropped, the flow completes (as for an unauthorized publish).
      if (packet.qos === 1) conn.send({ cmd: 'puback', messageId: id });
      else if (packet.qos === 2) conn.send({ cmd: 'pubrec', messageId: id });
    }
    return false;
  }
  return true;
}

/** A SUBACK code refusing this filter under the limits, or null. */
export function subscribeLimitCode(conn: Connection, session: Session, fullFilter: string, filter: string): number | null {
  const v5 = conn.version === 5;
  const broken = topicLimit(conn, filter);
  if (broken) {
    limitStats[broken]++;
    return v5 ? 0x8f : 0x80; // Topic Filter invalid
  }
  const max = conn.ctx.config.limits.maxSubscriptionsPerClient;
  if (max > 0 && !session.subscriptions.has(fullFilter) && session.subscriptions.size >= max) {
    limitStats.subscriptions++;
    return v5 ? 0x97 : 0x80; // Quota exceeded
  }
  return null;
}

/** Other worker-side metrics of the protection and transport modules, collected with the limits. */
export const extraMetricSources: Array<() => MetricJSON[]> = [];
