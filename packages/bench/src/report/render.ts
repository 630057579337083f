// Renders a compare JSON into report.md plus SVG charts next to it.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { CompareFile } from '../compare.ts';
import { summarize, type SummaryRow } from '../summary.ts';
import type { ScenarioResult } from '../types.ts';
import { colorFor, fmtLatency, hbarChart, latencyChart, type BarGroup } from './svg.ts';
import { fmtNum } from './text.ts';

const PERCENTILES: Array<[string, string]> = [
  ['p50', 'p50Us'],
  ['p90', 'p90Us'],
  ['p99', 'p99Us'],
  ['p99.9', 'p999Us'],
  ['max', 'maxUs'],
];

export function renderReport(jsonFile: string, outDir: string, _imgPrefix = ''): string[] {
  const doc = JSON.parse(readFileSync(jsonFile, 'utf8')) as CompareFile;
  if (doc.kind !== 'compare') throw new Error(`${jsonFile} is not a compare result`);
  // An interrupted compare saves runs but no summary yet: compute it from what is there.
  if (doc.summary.length === 0) {
    const s = summarize(doc.runs, doc.specs, doc.brokers.map((b) => b.name));
    doc.summary = s.rows;
    doc.ratios = s.ratios;
  }
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  const charts = buildCharts(doc);
  for (const [name, svg] of Object.entries(charts)) {
    const f = path.join(outDir, name);
    writeFileSync(f, svg);
    written.push(f);
  }
  const md = path.join(outDir, 'report.md');
  writeFileSync(md, markdown(doc, Object.keys(charts)));
  written.push(md);
  return written;
}

/** One line describing a spec as run, from the first successful result's options. */
export function describeSpec(doc: CompareFile, spec: string): string {
  const r = doc.runs.find((x) => x.spec === spec && x.result)?.result;
  if (!r) return spec;
  const o = r.options;
  const m = r.metrics;
  switch (r.scenario) {
    case 'connect-storm':
      return `connect-storm: ${fmtNum(o.connections)} connections, ${o.concurrency} concurrent handshakes${o.keep ? ', kept open' : ''}`;
    case 'idle':
      return `idle: ${fmtNum(o.connections)} idle connections${o.idleSubscribe ? ' with 1 subscription each' : ''}`;
    case 'latency':
      return `latency: ${fmtNum(o.rate)} msg/s, QoS ${o.qos}, ${o.size} B, ${m.publishers} pub -> ${m.subscribers} sub`;
    default:
      return `${r.scenario} QoS ${o.qos}: ${m.publishers} pub -> ${m.subscribers} sub, ${o.size} B${o.rate ? `, ${fmtNum(o.rate)} msg/s` : ''}`;
  }
}

function rowsFor(doc: CompareFile, spec: string): SummaryRow[] {
  return doc.summary.filter((r) => r.spec === spec && r.primary);
}

/** One bar group per matching spec: the primary metric (with min-max), or the median of `key`. */
function primaryGroups(doc: CompareFile, scenarios: string[], fmt: (v: number) => string, key?: string): BarGroup[] {
  return doc.specs
    .filter((s) => scenarios.includes(s.split(':')[0]!))
    .map((spec) => ({
      title: describeSpec(doc, spec),
      bars: rowsFor(doc, spec)
        .filter((r) => !key || r.medians[key] !== undefined)
        .map((r) => {
          const value = key ? r.medians[key]! : r.primary!.median;
          return {
            label: r.broker,
            value,
            min: key ? undefined : r.primary!.min,
            max: key ? undefined : r.primary!.max,
            color: colorFor(r.broker, doc.brokers.findIndex((b) => b.name === r.broker)),
            note: fmt(value),
          };
        }),
    }))
    .filter((g) => g.bars.length > 0);
}

function buildCharts(doc: CompareFile): Record<string, string> {
  const out: Record<string, string> = {};
  const sub = `median of up to ${doc.rounds} rounds, whiskers = min..max; ${doc.machine.cores} cores, ${doc.machine.cpu}`;
  const tput = primaryGroups(doc, ['fan-in', 'fan-out', 'pairs', 'cluster'], (v) => `${fmtNum(v)} msg/s`);
  if (tput.length) out['throughput.svg'] = hbarChart({ title: 'Delivered messages per second (higher is better)', subtitle: sub, groups: tput, format: (v) => fmtNum(v) });
  const eff = primaryGroups(doc, ['fan-in', 'fan-out', 'pairs', 'cluster'], (v) => `${fmtNum(v)} msg per CPU-s`, 'deliveredPerBrokerCpuSec');
  if (eff.length) out['efficiency.svg'] = hbarChart({ title: 'Delivered messages per broker CPU-second (higher is better)', subtitle: `median of up to ${doc.rounds} rounds; robust to other load on a shared machine`, groups: eff, format: (v) => fmtNum(v) });
  const conn = primaryGroups(doc, ['connect-storm'], (v) => `${fmtNum(v)} conn/s`);
  if (conn.length) out['connections.svg'] = hbarChart({ title: 'Connections per second (higher is better)', subtitle: sub, groups: conn, format: (v) => fmtNum(v) });
  const mem = primaryGroups(doc, ['idle'], (v) => `${fmtNum(v, 2)} KiB`);
  if (mem.length) out['memory.svg'] = hbarChart({ title: 'Broker memory per idle connection (lower is better)', subtitle: sub, groups: mem, format: (v) => fmtNum(v, 2) });
  for (const spec of doc.specs.filter((s) => s.startsWith('latency'))) {
    const rows = rowsFor(doc, spec);
    if (!rows.length) continue;
    const series = rows.map((r) => ({
      label: r.broker,
      color: colorFor(r.broker, doc.brokers.findIndex((b) => b.name === r.broker)),
      values: Object.fromEntries(PERCENTILES.map(([p, k]) => [p, r.medians[k] ?? 0])),
    }));
    const name = doc.specs.filter((s) => s.startsWith('latency')).length > 1 ? `latency-${slug(spec)}.svg` : 'latency.svg';
    out[name] = latencyChart(`End-to-end latency, ${describeSpec(doc, spec).replace(/^latency: /, '')} (lower is better)`, `median per percentile over ${doc.rounds} rounds, log scale`, PERCENTILES.map(([p]) => p), series);
  }
  return out;
}

function slug(s: string): string {
  return s.replace(/[^a-z0-9]+/gi, '-').replace(/-+$/, '');
}

const pct = (v: number | undefined): string => (v === undefined ? '–' : `${fmtNum(v * 100)}%`);
const n0 = (v: number | undefined): string => (v === undefined ? '–' : fmtNum(v));
const us = (v: number | undefined): string => (v === undefined ? '–' : fmtLatency(v));
const mib = (v: number | undefined): string => (v === undefined ? '–' : `${fmtNum(v, 1)} MiB`);

function tableFor(doc: CompareFile, spec: string): string {
  const rows = doc.summary.filter((r) => r.spec === spec);
  const scenario = spec.split(':')[0]!;
  const range = (r: SummaryRow, f: (v: number) => string): string =>
    r.primary ? `${f(r.primary.median)} (${f(r.primary.min)}–${f(r.primary.max)})` : 'failed';
  let head: string[];
  let cells: (r: SummaryRow) => string[];
  const m = (r: SummaryRow, k: string): number | undefined => r.medians[k];
  const tail = (r: SummaryRow): string[] => [
    pct(m(r, 'brokerCores')),
    mib(m(r, 'brokerRssPeakMiB')),
    pct(m(r, 'generatorCores')),
    pct(m(r, 'otherCores')),
    r.limitedBy || '–',
    `${r.n}/${r.n + r.errors}`,
  ];
  const tailHead = ['broker CPU', 'broker RSS peak', 'generator CPU', 'other processes CPU', 'limited by', 'runs ok'];
  if (scenario === 'latency') {
    head = ['broker', 'p50', 'p90', 'p99', 'p99.9', 'max', 'delivered msg/s'];
    cells = (r) => [r.broker, us(m(r, 'p50Us')), us(m(r, 'p90Us')), us(m(r, 'p99Us')), us(m(r, 'p999Us')), us(m(r, 'maxUs')), n0(m(r, 'deliveredPerSec'))];
  } else if (scenario === 'connect-storm') {
    head = ['broker', 'conn/s (min–max)', 'conn per broker CPU-s', 'CONNACK p50', 'CONNACK p99', 'CONNACK max', 'failed'];
    cells = (r) => [r.broker, range(r, (v) => fmtNum(v)), n0(m(r, 'connectsPerBrokerCpuSec')), us(m(r, 'p50Us')), us(m(r, 'p99Us')), us(m(r, 'maxUs')), n0(m(r, 'failed'))];
  } else if (scenario === 'idle') {
    head = ['broker', 'KiB per connection (min–max)', 'RSS before', 'RSS after', 'connected', 'idle broker CPU'];
    cells = (r) => [
      r.broker,
      range(r, (v) => fmtNum(v, 2)),
      mib(m(r, 'rssBeforeKb') !== undefined ? m(r, 'rssBeforeKb')! / 1024 : undefined),
      mib(m(r, 'rssAfterKb') !== undefined ? m(r, 'rssAfterKb')! / 1024 : undefined),
      n0(m(r, 'connected')),
      pct(m(r, 'idleBrokerCores')),
    ];
  } else {
    head = ['broker', 'delivered msg/s (min–max)', 'delivered per broker CPU-s', 'sent msg/s', 'acked msg/s', 'delivery ratio'];
    cells = (r) => [
      r.broker,
      range(r, (v) => fmtNum(v)),
      n0(m(r, 'deliveredPerBrokerCpuSec')),
      n0(m(r, 'sentPerSec')),
      m(r, 'ackedPerSec') ? n0(m(r, 'ackedPerSec')) : '–',
      pct(m(r, 'deliveryRatio')),
    ];
  }
  head = [...head, ...tailHead];
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`];
  for (const r of rows) lines.push(`| ${[...cells(r), ...tail(r)].join(' | ')} |`);
  return lines.join('\n');
}

function ratioTable(doc: CompareFile): string {
  if (doc.brokers.length < 2) return '';
  const lines = ['| scenario | metric | ' + doc.brokers.map((b) => b.name).join(' | ') + ' | ratios |', `|---|---|${doc.brokers.map(() => '---|').join('')}---|`];
  for (const spec of doc.specs) {
    const rows = doc.summary.filter((r) => r.spec === spec);
    const p = rows.find((r) => r.primary)?.primary;
    if (!p) continue;
    const vals = doc.brokers.map((b) => {
      const r = rows.find((x) => x.broker === b.name);
      return r?.primary ? fmtNum(r.primary.median, p.unit === 'KiB' ? 2 : 0) : 'failed';
    });
    const ratios = doc.ratios
      .filter((x) => x.spec === spec && doc.brokers.findIndex((b) => b.name === x.a) < doc.brokers.findIndex((b) => b.name === x.b))
      .map((x) => `${x.a}/${x.b} = ${x.ratio.toFixed(2)}×`)
      .join(', ');
    lines.push(`| ${spec} | ${p.name} (${p.unit}, ${p.higherIsBetter ? 'higher' : 'lower'} is better) | ${vals.join(' | ')} | ${ratios} |`);
  }
  return lines.join('\n');
}

export function markdown(doc: CompareFile, charts: string[]): string {
  const out: string[] = [];
  const mach = doc.machine;
  out.push(`# Broker comparison, ${doc.startedAt.slice(0, 16).replace('T', ' ')} UTC`, '');
  out.push(`Machine: ${mach.cores} cores (${mach.cpu}), ${mach.memoryGiB} GiB, ${mach.kernel}, Node ${mach.node}, open files ${mach.openFilesLimit}.`);
  out.push(`Versions: ${Object.entries(mach.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`, '');
  out.push(`Command: \`bench ${doc.argv.join(' ')}\``, '');
  out.push(`Brokers (each started fresh for every run, order rotated every round, ${doc.rounds} rounds):`, '');
  for (const b of doc.brokers) out.push(`- **${b.name}**: \`${b.template}\``);
  out.push('', 'CPU figures are shares of one core (100% = one core busy for the whole window); "other processes" is machine CPU used by neither the generator nor the broker. "limited by" is a heuristic: a generator thread at >= 90%, the machine at >= 90%, or the broker at >= 90% of a core.');
  out.push('', '## Medians and ratios', '', ratioTable(doc), '');
  for (const spec of doc.specs) out.push(`### ${describeSpec(doc, spec)}`, '', `Spec \`${spec}\`.`, '', tableFor(doc, spec), '');
  if (charts.length) {
    out.push('## Charts', '');
    for (const c of charts) out.push(`![${c.replace('.svg', '')}](${c})`, '');
  }
  const noisy = doc.runs.filter((r) => r.noisy && r.result);
  if (noisy.length) {
    out.push('## Runs disturbed by other processes', '');
    out.push(`${noisy.length} of ${doc.runs.length} runs had other processes using more than the allowed share of CPU during the window (kept after all attempts). CPU used by other processes, per run:`, '');
    for (const spec of doc.specs) {
      const mine = noisy.filter((r) => r.spec === spec);
      if (mine.length) out.push(`- ${spec}: ${mine.map((r) => `${r.broker} r${r.round + 1} ${fmtNum(r.result!.otherCores * 100)}%`).join(', ')}`);
    }
    out.push('');
  }
  const failed = doc.runs.filter((r) => r.error || (r.result?.errors.length ?? 0) > 0);
  if (failed.length) {
    out.push('## Errors', '');
    for (const r of failed) out.push(`- ${r.broker} ${r.spec} r${r.round + 1}: ${r.error ? r.error.split('\n')[0] : r.result!.errors.join('; ')}`);
    out.push('');
  }
  return out.join('\n');
}

export type { ScenarioResult };
