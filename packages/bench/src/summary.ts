// Turning repeated runs into medians and broker-vs-broker ratios.

import type { ScenarioResult } from './types.ts';

export interface CompareRun {
  spec: string;
  broker: string;
  round: number;
  result?: ScenarioResult;
  error?: string;
  /** How many times the run was tried (retried when other processes loaded the machine). */
  attempts?: number;
  /** Other processes still used notable CPU in the kept attempt. */
  noisy?: boolean;
}

export interface SummaryRow {
  spec: string;
  scenario: string;
  broker: string;
  /** Rounds that produced a result. */
  n: number;
  errors: number;
  primary: { name: string; unit: string; higherIsBetter: boolean; median: number; min: number; max: number } | null;
  /** Medians over rounds of the numbers worth tabulating. */
  medians: Record<string, number>;
  /** Most frequent limitedBy verdict over the rounds. */
  limitedBy: string;
}

export interface Ratio {
  spec: string;
  a: string;
  b: string;
  /** median(a) / median(b) of the primary metric. */
  ratio: number;
  /** True when a is the better of the two by the primary metric's direction. */
  aBetter: boolean;
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Flattens what a result says into named numbers; the medians table picks from these. */
export function flatten(r: ScenarioResult): Record<string, number> {
  const out: Record<string, number> = { ...r.metrics };
  if (r.latency) {
    out.p50Us = r.latency.p50;
    out.p90Us = r.latency.p90;
    out.p99Us = r.latency.p99;
    out.p999Us = r.latency.p999;
    out.maxUs = r.latency.max;
  }
  out.generatorCores = r.generator.cores;
  out.machineBusy = r.machineBusy;
  out.otherCores = r.otherCores;
  if (r.broker) {
    out.brokerCores = r.broker.cores;
    out.brokerRssPeakMiB = r.broker.rssPeakKb / 1024;
    // Work per broker CPU-second: far less sensitive than raw rates to other load on a shared
    // machine (a starved broker does less per wall second, not less per CPU second).
    if (r.broker.cpuSeconds > 0.05) {
      if (r.metrics.windowDelivered !== undefined) out.deliveredPerBrokerCpuSec = r.metrics.windowDelivered / r.broker.cpuSeconds;
      if (r.scenario === 'connect-storm' && r.metrics.connected !== undefined) out.connectsPerBrokerCpuSec = r.metrics.connected / r.broker.cpuSeconds;
    }
  }
  return out;
}

export function summarize(runs: CompareRun[], specs: string[], brokers: string[]): { rows: SummaryRow[]; ratios: Ratio[] } {
  const rows: SummaryRow[] = [];
  const ratios: Ratio[] = [];
  for (const spec of specs) {
    const bySpec: SummaryRow[] = [];
    for (const broker of brokers) {
      const mine = runs.filter((r) => r.spec === spec && r.broker === broker);
      const ok = mine.filter((r) => r.result).map((r) => r.result!);
      const first = ok[0];
      const prim = ok.map((r) => r.primary.value);
      const keys = new Set(ok.flatMap((r) => Object.keys(flatten(r))));
      const medians: Record<string, number> = {};
      for (const k of keys) {
        const vals = ok.map((r) => flatten(r)[k]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
        if (vals.length > 0) medians[k] = median(vals);
      }
      const row: SummaryRow = {
        spec,
        scenario: spec.split(':')[0]!,
        broker,
        n: ok.length,
        errors: mine.length - ok.length,
        primary: first
          ? {
              name: first.primary.name,
              unit: first.primary.unit,
              higherIsBetter: first.primary.higherIsBetter,
              median: median(prim),
              min: Math.min(...prim),
              max: Math.max(...prim),
            }
          : null,
        medians,
        limitedBy: mode(ok.map((r) => r.limitedBy)),
      };
      rows.push(row);
      bySpec.push(row);
    }
    for (const a of bySpec) {
      for (const b of bySpec) {
        if (a === b || !a.primary || !b.primary || b.primary.median === 0) continue;
        const ratio = a.primary.median / b.primary.median;
        ratios.push({ spec, a: a.broker, b: b.broker, ratio, aBetter: a.primary.higherIsBetter ? ratio > 1 : ratio < 1 });
      }
    }
  }
  return { rows, ratios };
}

function mode(values: string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '';
}
