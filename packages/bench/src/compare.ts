// compare: for each scenario spec and round, start every broker fresh on free ports (rotating the
// order each round so no broker always runs first or last), run the scenario, stop the broker.
// Results are saved after every run, so an interrupted compare still leaves data behind.

import path from 'node:path';
import { buildRunOptions, parseSpec, type Cli } from './args.ts';
import { resolveBrokers, startBroker, type BrokerDef } from './brokers.ts';
import { machineInfo, type MachineInfo } from './machine.ts';
import { waitForQuiet } from './proc-stats.ts';
import { fmtRate, Progress } from './progress.ts';
import { renderReport } from './report/render.ts';
import { fmtNum } from './report/text.ts';
import { resultsDir, stamp, writeJson } from './results.ts';
import { runScenario } from './scenarios/index.ts';
import { sleep } from './scenarios/meter.ts';
import { summarize, type CompareRun, type Ratio, type SummaryRow } from './summary.ts';

export interface CompareFile {
  kind: 'compare';
  startedAt: string;
  finishedAt: string;
  argv: string[];
  machine: MachineInfo;
  brokers: Array<{ name: string; template: string }>;
  rounds: number;
  specs: string[];
  runs: CompareRun[];
  summary: SummaryRow[];
  ratios: Ratio[];
}

/** The scenario set from the project brief, runnable as `compare standard`. */
export const STANDARD_SUITE = [
  'fan-in:qos=0',
  'fan-out:qos=0',
  'pairs:qos=1',
  'latency:rate=5000',
  'idle:connections=10000',
  'connect-storm:connections=5000',
];

export async function runCompare(cli: Cli, rawSpecs: string[]): Promise<number> {
  const specs = rawSpecs.flatMap((s) => (s === 'standard' ? STANDARD_SUITE : [s]));
  if (specs.length === 0) throw new Error('compare needs at least one scenario (or "standard")');
  const parsed = specs.map(parseSpec);
  // Fail on bad options before starting anything (cluster URLs are filled in per broker).
  const placeholder = { 'url-a': 'mqtt://127.0.0.1:1', 'url-b': 'mqtt://127.0.0.1:2' };
  for (const p of parsed) buildRunOptions(p.scenario, placeholder, cli.flags, p.flags);
  const names = String(cli.flags.brokers ?? 'mosquitto,aedes').split(',').filter(Boolean);
  const defs = resolveBrokers(names, cli.repeated['broker-cmd'] ?? []);
  const rounds = Number(cli.flags.rounds ?? 3);
  const cooldownMs = Number(cli.flags.cooldown ?? 1) * 1000;
  const progress = new Progress(Boolean(cli.flags.quiet));
  const dir = path.join(resultsDir(typeof cli.flags.out === 'string' ? cli.flags.out : undefined), `${stamp()}-compare`);
  const file = path.join(dir, 'compare.json');
  const doc: CompareFile = {
    kind: 'compare',
    startedAt: new Date().toISOString(),
    finishedAt: '',
    argv: process.argv.slice(2),
    machine: machineInfo(),
    brokers: defs.map((d) => ({ name: d.name, template: d.template })),
    rounds,
    specs,
    runs: [],
    summary: [],
    ratios: [],
  };
  const total = specs.length * rounds * defs.length;
  let k = 0;
  for (const spec of parsed) {
    for (let round = 0; round < rounds; round++) {
      const order = defs.map((_, i) => defs[(i + round) % defs.length]!);
      for (const def of order) {
        k++;
        const label = `[${k}/${total}] ${def.name} ${spec.id} r${round + 1}`;
        const run = await runOne(def, spec, round, label, cli, progress);
        doc.runs.push(run);
        writeJson(file, doc);
        progress.log(`${label}: ${describe(run)}`);
        await sleep(cooldownMs);
      }
    }
  }
  const { rows, ratios } = summarize(doc.runs, specs, names);
  doc.summary = rows;
  doc.ratios = ratios;
  doc.finishedAt = new Date().toISOString();
  writeJson(file, doc);
  const written = cli.flags['no-report'] ? [] : renderReport(file, dir, '');
  progress.log(`results: ${file}`);
  for (const w of written) progress.log(`report: ${w}`);
  return doc.runs.some((r) => r.result) ? 0 : 1;
}

async function runOne(
  def: BrokerDef,
  spec: ReturnType<typeof parseSpec>,
  round: number,
  label: string,
  cli: Cli,
  progress: Progress,
): Promise<CompareRun> {
  // Someone else's burst of CPU during the window skews a run: retry it (fresh broker) a few
  // times, keep the last attempt either way and flag it.
  const maxOther = Number(cli.flags['max-other'] ?? 0.3);
  const retries = Number(cli.flags.retries ?? 2);
  let run: CompareRun = { spec: spec.id, broker: def.name, round };
  for (let attempt = 1; attempt <= retries + 1; attempt++) {
    run = await attemptOne(def, spec, round, label, cli, progress);
    run.attempts = attempt;
    const other = run.result?.otherCores ?? 0;
    run.noisy = other > maxOther;
    if (!run.noisy) break;
    progress.log(`${label}: other processes used ${Math.round(other * 100)}% of a core during the window, ${attempt <= retries ? 'retrying' : 'keeping it (flagged)'}`);
  }
  return run;
}

async function attemptOne(
  def: BrokerDef,
  spec: ReturnType<typeof parseSpec>,
  round: number,
  label: string,
  cli: Cli,
  progress: Progress,
): Promise<CompareRun> {
  const base = { spec: spec.id, broker: def.name, round };
  const background = await waitForBackground(cli, progress, label);
  let broker;
  try {
    broker = await startBroker(def, { nodes: spec.scenario === 'cluster' ? 2 : 1 });
  } catch (err) {
    return { ...base, error: `start failed: ${(err as Error).message}` };
  }
  try {
    const url: Record<string, string> = { url: `mqtt://127.0.0.1:${broker.endpoint.port}` };
    if (spec.scenario === 'cluster') {
      url['url-a'] = url.url!;
      url['url-b'] = `mqtt://127.0.0.1:${broker.endpointB.port}`;
    }
    const o = buildRunOptions(spec.scenario, cli.flags, spec.flags, url);
    const result = await runScenario(o, { progress, label, brokerPid: broker.pid });
    result.backgroundBusy = background;
    return { ...base, result };
  } catch (err) {
    return { ...base, error: (err as Error).message };
  } finally {
    await broker.stop();
  }
}

/**
 * The machine may be shared (other test suites, other benchmarks): wait until it is quiet so
 * runs are not measured against someone else's load, and record what was seen either way.
 */
export async function waitForBackground(cli: Cli, progress: Progress, label: string): Promise<number> {
  const threshold = Number(cli.flags['max-background'] ?? 0.15);
  const waitSec = Number(cli.flags['background-wait'] ?? 60);
  let waits = 0;
  return waitForQuiet(threshold, waitSec * 1000, (busy) => {
    if (waits++ % 10 === 0) progress.log(`${label}: machine ${Math.round(busy * 100)}% busy before start, waiting (up to ${waitSec} s) for it to calm down`);
  });
}

function describe(run: CompareRun): string {
  if (!run.result) return `FAILED: ${run.error?.split('\n')[0]}`;
  const r = run.result;
  const p = r.primary;
  const value = p.unit === 'msg/s' || p.unit === 'conn/s' ? fmtRate(p.value) : `${fmtNum(p.value, p.unit === 'KiB' ? 2 : 0)} ${p.unit}`;
  const cpu = r.broker ? `, broker ${fmtNum(r.broker.cores * 100)}% CPU` : '';
  return `${p.name} ${value}${cpu}, generator ${fmtNum(r.generator.cores * 100)}% CPU${r.errors.length ? ` (${r.errors.length} error kinds)` : ''}`;
}
