// deploy/grafana/starling-dashboard.json against a real broker: every metric its PromQL selects must be
// one the broker exports. A plain node is scraped for everything; the cluster metrics (starling_redis_*,
// starling_cluster_*) exist only in cluster mode, so a node with a real redis-server is scraped for them.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PANELS, buildDashboard } from '../deploy/grafana/dashboard.ts';
import { evaluate, metricNames, parse, type Scrape } from '../deploy/grafana/promql.ts';
import { startBroker, REPO_ROOT, type BrokerProcess } from './helpers/broker.ts';
import { RedisServer, startCluster, type Cluster } from './helpers/cluster.ts';
import { scrape } from './helpers/metrics.ts';

const DASHBOARD = path.join(REPO_ROOT, 'deploy/grafana/starling-dashboard.json');
const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as { panels: Array<Record<string, any>>; templating: { list: Array<Record<string, any>> }; uid: string; id: unknown };

/** Names the dashboard may use that a node without Redis does not export (and only these). */
const CLUSTER_ONLY = [
  'starling_redis_connected',
  'starling_redis_errors_total',
  'starling_redis_reconnects_total',
  'starling_cluster_nodes',
  'starling_cluster_messages_in_total',
  'starling_cluster_messages_out_total',
  'starling_cluster_route_ack_timeouts_total',
];

const exprs: string[] = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t: { expr: string }) => t.expr));
const variableQueries: string[] = dashboard.templating.list.filter((v) => v.type === 'query').map((v) => v.definition as string);
const usedNames = [...new Set([...exprs.flatMap(metricNames), ...variableQueries.map((q) => /label_values\((\w+)/.exec(q)![1]!)])].sort();

interface Exposition {
  samples: Set<string>;
  types: Map<string, string>;
}

function read(text: string): Exposition {
  const samples = new Set<string>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)/.exec(line);
    if (t) types.set(t[1]!, t[2]!);
    else if (line && !line.startsWith('#')) samples.add(/^[^{\s]+/.exec(line)![0]);
  }
  return { samples, types };
}

/** The family a sample name belongs to: histogram/summary series carry _bucket/_sum/_count. */
function family(name: string, e: Exposition): { family: string; type: string } | undefined {
  if (e.types.has(name)) return { family: name, type: e.types.get(name)! };
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (!m) return undefined;
  const type = e.types.get(m[1]!);
  if (type === 'histogram' || (type === 'summary' && m[2] !== 'bucket')) return { family: m[1]!, type };
  return undefined;
}

function missing(names: string[], e: Exposition): string[] {
  return names.filter((n) => !e.samples.has(n) || !family(n, e));
}

describe('deploy/grafana/starling-dashboard.json', () => {
  it('is what deploy/grafana/dashboard.ts generates (run it after editing the panels)', () => {
    expect(dashboard).toEqual(JSON.parse(JSON.stringify(buildDashboard())));
  });

  it('is provisionable: uid, no id, a datasource variable every query uses, panels on the 24-column grid without overlaps', () => {
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    expect(dashboard.id).toBeNull();
    expect(dashboard.templating.list.find((v) => v.type === 'datasource')?.name).toBe('datasource');
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      expect(p.datasource.uid, p.title).toBe('${datasource}');
      for (const t of p.targets) expect(t.datasource.uid, p.title).toBe('${datasource}');
      const g = p.gridPos;
      expect(g.x + g.w, p.title).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++) for (let y = g.y; y < g.y + g.h; y++) {
        expect(cells.has(`${x},${y}`), `${p.title} overlaps another panel`).toBe(false);
        cells.add(`${x},${y}`);
      }
    }
  });

  it('every query is in the PromQL subset the panel renderer evaluates, and filters on the node variable', () => {
    expect(exprs.length).toBeGreaterThan(15);
    for (const e of exprs) {
      expect(() => parse(e), e).not.toThrow();
      expect(e, 'each query honours the dashboard\'s node ($pod) selection').toContain('pod=~"$pod"');
    }
    const quantiles = exprs.filter((e) => e.startsWith('histogram_quantile'));
    expect(quantiles.length).toBeGreaterThanOrEqual(3);
    for (const q of quantiles) expect(q).toMatch(/sum by \(le\) \(rate\(\w+_bucket\{/);
  });

  it('has the panels the runbook refers to, each rendered for the README (docs/img/dashboard-<slug>.png)', () => {
    const titles = PANELS.map((p) => p.title);
    for (const t of ['Connections per node', 'Disconnects by reason', 'Messages dropped by cause', 'Publish-to-deliver latency', 'Offline sessions and queues', 'Session takeovers and wills', 'Redis health', 'Cross-node traffic', 'Worker event-loop lag']) {
      expect(titles).toContain(t);
    }
    for (const p of PANELS) expect(fs.existsSync(path.join(REPO_ROOT, 'docs/img', `dashboard-${p.slug}.png`)), p.slug).toBe(true);
  });
});

describe('the PromQL subset the panels are rendered with (deploy/grafana/promql.ts)', () => {
  const at = (t: number, samples: Array<[string, Record<string, string>, number]>): Scrape => ({ t, samples: samples.map(([name, labels, value]) => ({ name, labels, value })) });
  const o = { rateInterval: 5, vars: { pod: '.*' } };

  it('rate and increase handle a counter reset; sum by keeps only the by-labels', () => {
    const scrapes = [
      at(0, [['c_total', { pod: 'a', x: '1' }, 10], ['c_total', { pod: 'b', x: '1' }, 0]]),
      at(2, [['c_total', { pod: 'a', x: '1' }, 30], ['c_total', { pod: 'b', x: '1' }, 4]]),
      at(4, [['c_total', { pod: 'a', x: '1' }, 5], ['c_total', { pod: 'b', x: '1' }, 8]]), // a restarted
    ];
    const r = evaluate('sum by (pod) (rate(c_total{pod=~"$pod"}[$__rate_interval]))', scrapes, 4, o);
    expect(r).toEqual([{ labels: { pod: 'a' }, value: 25 / 4 }, { labels: { pod: 'b' }, value: 2 }]);
    expect(evaluate('sum(increase(c_total{pod="b"}[4s]))', scrapes, 4, o)).toEqual([{ labels: {}, value: 8 }]);
    expect(evaluate('max(c_total)', scrapes, 4, o)).toEqual([{ labels: {}, value: 8 }]);
  });

  it('histogram_quantile interpolates inside the bucket like Prometheus, and answers the last finite bound for +Inf', () => {
    const h = (t: number, a: number, b: number, inf: number) =>
      at(t, [['h_bucket', { le: '0.1' }, a], ['h_bucket', { le: '0.5' }, b], ['h_bucket', { le: '+Inf' }, inf]]);
    const scrapes = [h(0, 0, 0, 0), h(1, 10, 20, 20)];
    const q = (x: number) => evaluate(`histogram_quantile(${x}, sum by (le) (rate(h_bucket[5s])))`, scrapes, 1, o)[0]!.value;
    expect(q(0.5)).toBeCloseTo(0.1);
    expect(q(0.75)).toBeCloseTo(0.3);
    const over = [h(0, 0, 0, 0), h(1, 0, 0, 10)];
    expect(evaluate('histogram_quantile(0.99, sum by (le) (rate(h_bucket[5s])))', over, 1, o)[0]!.value).toBe(0.5);
  });

  it('refuses PromQL outside the subset instead of drawing it wrong', () => {
    expect(() => parse('sum(rate(a[1m])) / sum(rate(b[1m]))')).toThrow(/unsupported PromQL/);
    expect(() => parse('topk(3, a)')).toThrow();
  });
});

describe('every metric the dashboard queries exists in a real scrape', () => {
  let plain: BrokerProcess;
  let plainScrape: Exposition;

  beforeAll(async () => {
    plain = await startBroker({ workers: 2, logLevel: 'info' });
    plainScrape = read(await scrape(plain.metricsPort));
  });
  afterAll(async () => {
    await plain?.stop();
  });

  it('a node without Redis exports every name but the cluster-only ones', () => {
    const nonCluster = usedNames.filter((n) => !CLUSTER_ONLY.includes(n));
    expect(nonCluster.length).toBeGreaterThan(15);
    expect(missing(nonCluster, plainScrape)).toEqual([]);
  });

  it('histogram series are selected through their family (_bucket of a histogram)', () => {
    const buckets = usedNames.filter((n) => n.endsWith('_bucket'));
    expect(buckets).toContain('starling_publish_deliver_latency_seconds_bucket');
    for (const b of buckets) expect(family(b, plainScrape)).toEqual({ family: b.replace(/_bucket$/, ''), type: 'histogram' });
  });

  it('the cluster-only allowlist is exact: those names are used by the dashboard and absent without Redis', () => {
    for (const n of CLUSTER_ONLY) {
      expect(usedNames, `${n} is in CLUSTER_ONLY but no panel uses it`).toContain(n);
      expect(plainScrape.samples.has(n), `${n} is exported without Redis: take it off CLUSTER_ONLY`).toBe(false);
    }
  });

  const hasRedis = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0;

  describe.skipIf(!hasRedis)('cluster mode (a real redis-server)', () => {
    let redis: RedisServer;
    let cluster: Cluster;
    beforeAll(async () => {
      redis = await RedisServer.start();
      cluster = await startCluster(redis, ['dash-a', 'dash-b'], { workers: 1 });
    });
    afterAll(async () => {
      await cluster?.stop();
      await redis?.kill();
    });

    it('a cluster node exports every name the dashboard uses, cluster metrics included', async () => {
      const e = read(await scrape(cluster.node('dash-a').metricsPort));
      expect(missing(usedNames, e)).toEqual([]);
      expect(missing(CLUSTER_ONLY, e)).toEqual([]);
    });
  });
});
