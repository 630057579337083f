// The plain form metrics travel in between threads (prom-client's getMetricsAsJSON shape), and small
// helpers to build and read it. Worker threads produce it without prom-client objects on the hot path;
// the main thread merges every worker's with its own into one scrape (AggregatorRegistry.aggregate).

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricSample {
  labels: Record<string, string | number>;
  value: number;
  /** For histograms: `<name>_bucket`, `<name>_sum`, `<name>_count`. */
  metricName?: string;
}

export interface MetricJSON {
  name: string;
  help: string;
  type: MetricType;
  /** How the main thread merges the same series from several threads: always summed here. */
  aggregator: 'sum';
  values: MetricSample[];
}

export function metric(name: string, help: string, type: MetricType, values: MetricSample[]): MetricJSON {
  return { name, help, type, aggregator: 'sum', values };
}

/** Sum of a metric's samples whose labels include `labels` (histograms: give metricName via `name`). */
export function sampleSum(metrics: readonly MetricJSON[], name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const m of metrics) {
    const base = m.type === 'histogram' ? name.replace(/_(bucket|sum|count)$/, '') : name;
    if (m.name !== base) continue;
    for (const v of m.values) {
      if (m.type === 'histogram' && (v.metricName ?? m.name) !== name) continue;
      let match = true;
      for (const k in labels) if (String(v.labels[k]) !== labels[k]) match = false;
      if (match) total += v.value;
    }
  }
  return total;
}

/** Only what must never go down across a thread's restart: counters and histograms (gauges describe the present). */
export function monotonicOnly(metrics: readonly MetricJSON[]): MetricJSON[] {
  return metrics.filter((m) => m.type === 'counter' || m.type === 'histogram');
}

function seriesKey(metricName: string, labels: Record<string, string | number>): string {
  return `${metricName}|${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',')}`;
}

/** Adds `extra`'s counters and histograms into `into` (same series summed), in place. */
export function addMonotonic(into: MetricJSON[], extra: readonly MetricJSON[]): void {
  for (const m of monotonicOnly(extra)) {
    let target = into.find((t) => t.name === m.name);
    if (!target) {
      target = { ...m, values: [] };
      into.push(target);
    }
    const index = new Map(target.values.map((v) => [seriesKey(v.metricName ?? m.name, v.labels), v]));
    for (const v of m.values) {
      const have = index.get(seriesKey(v.metricName ?? m.name, v.labels));
      if (have) have.value += v.value;
      else target.values.push({ ...v, labels: { ...v.labels } });
    }
  }
}
