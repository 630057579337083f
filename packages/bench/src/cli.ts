#!/usr/bin/env node
// Entry point: `pnpm bench -- <scenario> [options]`, `compare ...`, `report ...`, `list`.

import path from 'node:path';
import { buildRunOptions, parseCli, parseSpec, type Cli } from './args.ts';
import { BUILTIN_BROKERS, killAllBrokers, resolveBrokers, startBroker } from './brokers.ts';
import { runCompare, waitForBackground } from './compare.ts';
import { Progress } from './progress.ts';
import { renderReport } from './report/render.ts';
import { formatResult } from './report/text.ts';
import { resultsDir, stamp, writeJson } from './results.ts';
import { runScenario } from './scenarios/index.ts';
import { SCENARIOS } from './types.ts';

const USAGE = `Starling MQTT load generator

  bench <scenario> [options]                 run one scenario against --url (or a --broker it starts)
  bench compare [--brokers a,b] [--rounds 3] <scenario[:opt=v,...]>...
                                             start each broker, run scenarios alternately, report
  bench report <compare.json> [--out dir]    re-render SVG charts and markdown from a compare JSON
  bench list                                 scenarios and built-in brokers

scenarios: ${SCENARIOS.join(', ')}

options (defaults depend on the scenario; see docs/benchmarks.md):
  --url mqtt://127.0.0.1:1883   broker address (loopback only)
  --url-a URL --url-b URL       cluster: publishers connect to A, subscribers to B
  --broker NAME                 start this broker for a single run (${Object.keys(BUILTIN_BROKERS).join(', ')})
  --broker-cmd NAME='cmd {port}' define or override a broker command (repeatable)
  --pid PID                     broker process to sample (CPU, RSS) when not started by us
  --qos 0|1|2  --size BYTES  --mqtt 3.1.1|5
  --publishers N  --subscribers N  --pairs N  --pattern fan-in|fan-out|pairs
  --inflight N                  unacknowledged QoS>0 messages per publisher (100)
  --rate MSG/S                  total publish rate, 0 = as fast as possible
  --warmup S (2)  --duration S (5)  --max-messages N (50M)  --workers N (2)
  --connections N  --concurrency N  --connect-rate N  --keep  --settle S  --idle-subscribe
  --rounds N (3)  --brokers a,b,c  --cooldown S (1)  --out DIR (.bench-results)  --json  --quiet
  --max-background F (0.15)     wait before each run until the machine is less busy than this...
  --background-wait S (60, single runs 10)  ...but no longer than this (the reading is stored)
  --max-other F (0.3) --retries N (2)  compare: retry a run if other processes used more CPU than this
`;

async function main(argv: string[]): Promise<number> {
  const cli = parseCli(argv);
  const [command, ...rest] = cli.positionals;
  if (!command || cli.flags.help) {
    process.stdout.write(USAGE);
    return cli.flags.help ? 0 : 1;
  }
  if (command === 'list') {
    process.stdout.write(`scenarios: ${SCENARIOS.join(', ')}\n`);
    for (const b of Object.values(BUILTIN_BROKERS)) process.stdout.write(`broker ${b.name}: ${b.template}\n`);
    return 0;
  }
  if (command === 'compare') return runCompare(cli, rest);
  if (command === 'report') return report(cli, rest);
  return single(cli, command, rest);
}

async function single(cli: Cli, spec: string, extra: string[]): Promise<number> {
  if (extra.length > 0) throw new Error(`unexpected arguments: ${extra.join(' ')}`);
  const { scenario, flags } = parseSpec(spec);
  const progress = new Progress(Boolean(cli.flags.quiet));
  // A single run waits less for a quiet machine than a compare does (see --background-wait).
  const background = await waitForBackground({ ...cli, flags: { 'background-wait': '10', ...cli.flags } }, progress, spec);
  const brokerName = cli.flags.broker;
  const broker =
    typeof brokerName === 'string'
      ? await startBroker(resolveBrokers([brokerName], cli.repeated['broker-cmd'] ?? [])[0]!, { nodes: scenario === 'cluster' ? 2 : 1 })
      : null;
  try {
    const url: Record<string, string> = broker ? { url: `mqtt://127.0.0.1:${broker.endpoint.port}` } : {};
    if (broker && scenario === 'cluster') {
      url['url-a'] = url.url!;
      url['url-b'] = `mqtt://127.0.0.1:${broker.endpointB.port}`;
    }
    const o = buildRunOptions(scenario, cli.flags, flags, url);
    const pid = broker?.pid ?? (cli.flags.pid ? Number(cli.flags.pid) : undefined);
    const label = broker ? `${broker.name} ${scenario}` : scenario;
    progress.log(`${label}: starting (${o.pubUrl.host}:${o.pubUrl.port})`);
    const result = await runScenario(o, { progress, label, brokerPid: pid });
    result.backgroundBusy = background;
    progress.log(`${label}: done`);
    const file = writeJson(
      path.join(resultsDir(typeof cli.flags.out === 'string' ? cli.flags.out : undefined), `${stamp()}-${scenario}.json`),
      { kind: 'single', broker: broker ? { name: broker.name, command: broker.command } : null, result },
    );
    if (cli.flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    else process.stdout.write(`${formatResult(result)}\n  results: ${file}\n`);
    return 0;
  } finally {
    await broker?.stop();
  }
}

async function report(cli: Cli, args: string[]): Promise<number> {
  const file = args[0];
  if (!file) throw new Error('report needs a compare JSON file');
  const out = typeof cli.flags.out === 'string' ? cli.flags.out : path.dirname(file);
  const written = renderReport(path.resolve(file), path.resolve(out));
  for (const f of written) process.stdout.write(`${f}\n`);
  return 0;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAllBrokers();
    process.exit(130);
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    killAllBrokers();
    // Start on a clean line if a TTY progress line is showing.
    process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}bench: ${err.message}\n`);
    process.exit(1);
  },
);
