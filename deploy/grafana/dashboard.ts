// The Starling Grafana dashboard, defined once here. Writes the provisionable JSON and the Kubernetes
// ConfigMap that carries it (Grafana's dashboard sidecar picks up ConfigMaps labelled grafana_dashboard):
//   pnpm exec node deploy/grafana/dashboard.ts
// test/deploy-dashboard.test.ts checks both files are what this writes, and that every metric the
// panels query is one the broker exports.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Target {
  expr: string;
  legendFormat: string;
}

export interface PanelSpec {
  /** Short name, also the PNG's name (docs/img/dashboard-<slug>.png). */
  slug: string;
  title: string;
  description: string;
  unit: string;
  stacked?: boolean;
  /** Grid position: Grafana's 24 columns. */
  w: number;
  h: number;
  targets: Target[];
}

/** Every query filters on the dashboard's `pod` variable; one pod is one Starling node. */
const P = 'pod=~"$pod"';
const R = '$__rate_interval';

export const PANELS: PanelSpec[] = [
  {
    slug: 'connections',
    title: 'Connections per node',
    description: 'Open MQTT connections on each node (starling_connections, summed over its workers). Uneven nodes rebalance only as clients reconnect.',
    unit: 'short',
    w: 12,
    h: 8,
    targets: [{ expr: `sum by (pod) (starling_connections{${P}})`, legendFormat: '{{pod}}' }],
  },
  {
    slug: 'connects',
    title: 'Connect attempts by result',
    description: 'CONNECT packets per second by result: accepted, or why they were refused. A rise in bad_credentials or not_authorized is a client or an attack; server_unavailable means the node could not take sessions.',
    unit: 'reqps',
    stacked: true,
    w: 12,
    h: 8,
    targets: [{ expr: `sum by (result) (rate(starling_connection_attempts_total{${P}}[${R}]))`, legendFormat: '{{result}}' }],
  },
  {
    slug: 'disconnects',
    title: 'Disconnects by reason',
    description: 'Connection ends per second by reason (stacked). keepalive_timeout and socket_closed/socket_error are network trouble; session_taken_over is a client id connecting twice; server_shutting_down is a rollout or scale-in; worker_crash deserves the logs.',
    unit: 'reqps',
    stacked: true,
    w: 12,
    h: 8,
    targets: [{ expr: `sum by (reason) (rate(starling_disconnects_total{${P}}[${R}]))`, legendFormat: '{{reason}}' }],
  },
  {
    slug: 'messages',
    title: 'Messages in and out',
    description: 'PUBLISH packets per second received from clients and sent to subscribers, all nodes.',
    unit: 'short',
    w: 12,
    h: 8,
    targets: [
      { expr: `sum(rate(starling_messages_received_total{${P}}[${R}]))`, legendFormat: 'in' },
      { expr: `sum(rate(starling_messages_sent_total{${P}}[${R}]))`, legendFormat: 'out' },
    ],
  },
  {
    slug: 'drops',
    title: 'Messages dropped by cause',
    description: 'Messages not delivered, per second, by cause (stacked). queue_full: an offline or slow session overflowed limits.maxQueued; slow_consumer: a subscriber could not keep up; no_route: published to a topic nobody subscribes.',
    unit: 'short',
    stacked: true,
    w: 12,
    h: 8,
    targets: [{ expr: `sum by (cause) (rate(starling_messages_dropped_total{${P}}[${R}]))`, legendFormat: '{{cause}}' }],
  },
  {
    slug: 'latency',
    title: 'Publish-to-deliver latency',
    description: 'Time from receiving a PUBLISH to writing it to a subscriber, quantiles over all nodes (histogram_quantile of starling_publish_deliver_latency_seconds).',
    unit: 's',
    w: 12,
    h: 8,
    targets: [
      { expr: `histogram_quantile(0.5, sum by (le) (rate(starling_publish_deliver_latency_seconds_bucket{${P}}[${R}])))`, legendFormat: 'p50' },
      { expr: `histogram_quantile(0.95, sum by (le) (rate(starling_publish_deliver_latency_seconds_bucket{${P}}[${R}])))`, legendFormat: 'p95' },
      { expr: `histogram_quantile(0.99, sum by (le) (rate(starling_publish_deliver_latency_seconds_bucket{${P}}[${R}])))`, legendFormat: 'p99' },
    ],
  },
  {
    slug: 'queues',
    title: 'Offline sessions and queues',
    description: 'Persistent sessions without a connection, messages queued for sessions (offline or window full) and QoS 1/2 messages awaiting acknowledgement. A queue that only grows ends in queue_full drops.',
    unit: 'short',
    w: 12,
    h: 8,
    targets: [
      { expr: `sum(starling_sessions{${P}, state="offline"})`, legendFormat: 'offline sessions' },
      { expr: `sum(starling_queued_messages{${P}})`, legendFormat: 'queued messages' },
      { expr: `sum(starling_inflight_messages{${P}})`, legendFormat: 'in flight' },
    ],
  },
  {
    slug: 'takeovers-wills',
    title: 'Session takeovers and wills',
    description: 'Sessions taken over by a new connection with the same client id, and will messages published by cause, per second. Steady takeovers usually mean two clients share an id.',
    unit: 'short',
    w: 12,
    h: 8,
    targets: [
      { expr: `sum(rate(starling_session_takeovers_total{${P}}[${R}]))`, legendFormat: 'takeovers' },
      { expr: `sum by (cause) (rate(starling_wills_published_total{${P}}[${R}]))`, legendFormat: 'wills: {{cause}}' },
    ],
  },
  {
    slug: 'redis',
    title: 'Redis health',
    description: 'Cluster mode only. Whether each node reaches Redis (1 = connected), router operations failed because of Redis and reconnections per second, and the live nodes each node sees.',
    unit: 'short',
    w: 12,
    h: 8,
    targets: [
      { expr: `min by (pod) (starling_redis_connected{${P}})`, legendFormat: 'connected: {{pod}}' },
      { expr: `sum(rate(starling_redis_errors_total{${P}}[${R}]))`, legendFormat: 'errors/s' },
      { expr: `sum(rate(starling_redis_reconnects_total{${P}}[${R}]))`, legendFormat: 'reconnects/s' },
      { expr: `max(starling_cluster_nodes{${P}})`, legendFormat: 'live nodes' },
    ],
  },
  {
    slug: 'cross-node',
    title: 'Cross-node traffic',
    description: 'Cluster mode only. Messages per second each node sends to other nodes through Redis and receives from them, and route changes not acknowledged in time.',
    unit: 'short',
    w: 12,
    h: 8,
    targets: [
      { expr: `sum by (pod) (rate(starling_cluster_messages_out_total{${P}}[${R}]))`, legendFormat: 'out: {{pod}}' },
      { expr: `sum by (pod) (rate(starling_cluster_messages_in_total{${P}}[${R}]))`, legendFormat: 'in: {{pod}}' },
      { expr: `sum(rate(starling_cluster_route_ack_timeouts_total{${P}}[${R}]))`, legendFormat: 'route ack timeouts' },
    ],
  },
  {
    slug: 'event-loop',
    title: 'Worker event-loop lag',
    description: 'p99 event-loop delay of each session worker since the previous scrape. Sustained tens of milliseconds: the worker is saturated (add CPU or nodes).',
    unit: 's',
    w: 12,
    h: 8,
    targets: [{ expr: `max by (pod, worker) (starling_event_loop_lag_seconds{${P}})`, legendFormat: '{{pod}} worker {{worker}}' }],
  },
  {
    slug: 'bytes',
    title: 'Bytes in and out',
    description: 'Bytes per second read from and written to client sockets, per node.',
    unit: 'Bps',
    w: 12,
    h: 8,
    targets: [
      { expr: `sum by (pod) (rate(starling_received_bytes_total{${P}}[${R}]))`, legendFormat: 'in: {{pod}}' },
      { expr: `sum by (pod) (rate(starling_sent_bytes_total{${P}}[${R}]))`, legendFormat: 'out: {{pod}}' },
    ],
  },
];

/** Stat panels along the top: what an on-call person looks at first. */
export const STATS: Array<{ title: string; expr: string; unit: string; description: string }> = [
  { title: 'Ready nodes', expr: `sum(starling_ready{${P}})`, unit: 'short', description: 'Nodes accepting connections (/readyz 200).' },
  { title: 'Connections', expr: `sum(starling_connections{${P}})`, unit: 'short', description: 'Open MQTT connections, all nodes.' },
  { title: 'Subscriptions', expr: `sum(starling_subscriptions{${P}})`, unit: 'short', description: 'Subscriptions held by sessions, all nodes.' },
  { title: 'Retained messages', expr: `max(starling_retained_messages{${P}})`, unit: 'short', description: 'Retained messages stored.' },
  { title: 'Worker restarts (1h)', expr: `sum(increase(starling_worker_restarts_total{${P}}[1h]))`, unit: 'short', description: 'Session workers restarted after a crash in the last hour; anything above 0 deserves a look at the logs.' },
  { title: 'Broker versions', expr: `count by (version) (starling_build_info{${P}})`, unit: 'short', description: 'Nodes per running version (mixed during a rollout).' },
];

const DS = { type: 'prometheus', uid: '${datasource}' };

export function buildDashboard(): Record<string, unknown> {
  const panels: Array<Record<string, unknown>> = [];
  let id = 1;
  STATS.forEach((s, i) => {
    panels.push({
      id: id++,
      type: 'stat',
      title: s.title,
      description: s.description,
      datasource: DS,
      gridPos: { x: i * 4, y: 0, w: 4, h: 4 },
      fieldConfig: { defaults: { unit: s.unit, color: { mode: 'thresholds' }, thresholds: { mode: 'absolute', steps: [{ color: 'green', value: null }] } }, overrides: [] },
      options: { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'none', textMode: s.title === 'Broker versions' ? 'value_and_name' : 'auto' },
      targets: [{ datasource: DS, expr: s.expr, legendFormat: s.title === 'Broker versions' ? '{{version}}' : '', refId: 'A', instant: true }],
    });
  });
  let x = 0;
  let y = 4;
  for (const p of PANELS) {
    if (x + p.w > 24) {
      x = 0;
      y += p.h;
    }
    panels.push({
      id: id++,
      type: 'timeseries',
      title: p.title,
      description: p.description,
      datasource: DS,
      gridPos: { x, y, w: p.w, h: p.h },
      fieldConfig: {
        defaults: {
          unit: p.unit,
          min: 0,
          custom: {
            drawStyle: 'line',
            lineWidth: 1,
            fillOpacity: p.stacked ? 60 : 10,
            showPoints: 'never',
            stacking: { mode: p.stacked ? 'normal' : 'none', group: 'A' },
          },
        },
        overrides: [],
      },
      options: { legend: { displayMode: 'table', placement: 'right', calcs: ['lastNotNull', 'max'] }, tooltip: { mode: 'multi', sort: 'desc' } },
      targets: p.targets.map((t, i) => ({ datasource: DS, expr: t.expr, legendFormat: t.legendFormat, refId: String.fromCharCode(65 + i) })),
    });
    x += p.w;
  }
  return {
    // Provisioning reads uid and title; id stays null so Grafana assigns one.
    id: null,
    uid: 'starling-broker',
    title: 'Starling MQTT broker',
    description: 'Starling nodes: connections, traffic, latency, sessions, cluster (Redis). Source: deploy/grafana/dashboard.ts.',
    tags: ['starling', 'mqtt'],
    timezone: 'browser',
    editable: true,
    graphTooltip: 1,
    refresh: '30s',
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-1h', to: 'now' },
    templating: {
      list: [
        { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus', current: {}, hide: 0, refresh: 1 },
        {
          name: 'pod',
          label: 'Node',
          type: 'query',
          datasource: DS,
          query: { query: 'label_values(starling_build_info, pod)', refId: 'PodVariable' },
          definition: 'label_values(starling_build_info, pod)',
          refresh: 2,
          multi: true,
          includeAll: true,
          allValue: '.*',
          current: { selected: true, text: ['All'], value: ['$__all'] },
          sort: 1,
        },
      ],
    },
    annotations: { list: [] },
    panels,
  };
}

export const DASHBOARD_JSON = path.join(path.dirname(fileURLToPath(import.meta.url)), 'starling-dashboard.json');
export const DASHBOARD_CONFIGMAP = path.join(path.dirname(fileURLToPath(import.meta.url)), '../k8s/base/grafana-dashboard.yaml');

export function dashboardJsonText(): string {
  return `${JSON.stringify(buildDashboard(), null, 2)}\n`;
}

/** The ConfigMap, by hand (block scalar, every line indented): no YAML library needed to write it. */
export function configMapText(json = dashboardJsonText()): string {
  const body = json
    .trimEnd()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
  return [
    '# Generated by deploy/grafana/dashboard.ts from the same definition as deploy/grafana/starling-dashboard.json;',
    "# do not edit by hand. Grafana's dashboard sidecar (kube-prometheus-stack, grafana chart) loads ConfigMaps",
    '# labelled grafana_dashboard.',
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata:',
    '  name: starling-grafana-dashboard',
    '  labels:',
    '    app.kubernetes.io/name: starling',
    '    grafana_dashboard: "1"',
    '  annotations:',
    '    grafana_folder: Starling',
    'data:',
    '  starling-dashboard.json: |',
    body,
    '',
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const json = dashboardJsonText();
  fs.writeFileSync(DASHBOARD_JSON, json);
  fs.writeFileSync(DASHBOARD_CONFIGMAP, configMapText(json));
  process.stdout.write(`wrote ${DASHBOARD_JSON}\nwrote ${DASHBOARD_CONFIGMAP}\n`);
}
