// connect-storm: open N connections as fast as allowed, measure connections/s and CONNACK time.
// idle: open N connections and keep them, measure the broker's RSS growth per connection.

import { mergeHistograms, summarize } from '../latency.ts';
import { WorkerPool } from '../load/pool.ts';
import type { ConnectPlan } from '../load/protocol.ts';
import { rssKb } from '../proc-stats.ts';
import { fmtRate } from '../progress.ts';
import type { RunOptions, ScenarioResult } from '../types.ts';
import type { RunContext } from './context.ts';
import { sleep, WindowMeter } from './meter.ts';
import { limitedBy } from './bottleneck.ts';

function split(total: number, parts: number, i: number): number {
  return Math.floor(total / parts) + (i < total % parts ? 1 : 0);
}

export async function runConnections(o: RunOptions, ctx: RunContext): Promise<ScenarioResult> {
  const startedAt = new Date().toISOString();
  const idle = o.scenario === 'idle';
  const keep = idle || o.keep;
  const workers = Math.max(1, Math.min(o.workers, o.connections));
  const pool = new WorkerPool(workers);
  const errors: string[] = [];
  try {
    for (let slot = 0; slot < workers; slot++) {
      const plan: ConnectPlan = {
        kind: 'connect',
        endpoint: o.pubUrl,
        protocol: o.protocol,
        keepalive: o.keepalive,
        idPrefix: `sb${o.runTag}w${slot}c`,
        count: split(o.connections, workers, slot),
        concurrency: Math.max(1, split(o.concurrency, workers, slot)),
        rate: o.connectRate > 0 ? o.connectRate / workers : 0,
        keep,
        subscribe: idle && o.idleSubscribe ? { filterPrefix: `bench/${o.runTag}/idle/${slot}/`, qos: o.qos } : null,
      };
      pool.post(slot, { type: 'setup', plan });
    }
    await pool.collect('ready', 30_000);

    let rssBeforeKb = 0;
    if (idle && ctx.brokerPid) {
      ctx.progress.update(`${ctx.label}: settling ${o.settle}s before connecting`);
      await sleep(o.settle * 1000);
      rssBeforeKb = rssKb(ctx.brokerPid);
    }
    const meter = new WindowMeter(ctx.brokerPid);
    meter.start();
    const cpu0 = pool.threadCpu();
    pool.broadcast({ type: 'go', windowStartNs: 0, windowEndNs: 0 });
    const done = pool.collect('connect-done', 600_000);
    let finished = false;
    void done.then(
      () => (finished = true),
      () => (finished = true),
    );
    const t0 = performance.now();
    while (!finished) {
      await sleep(200);
      meter.poll();
      const tot = pool.totals();
      const sec = (performance.now() - t0) / 1000;
      ctx.progress.update(
        `${ctx.label}: ${tot.connected}/${o.connections} connected, ${tot.failed} failed, ${fmtRate(tot.connected / sec)} avg`,
      );
    }
    const reports = await done;
    const storm = meter.end();
    const threads = pool.threadCpu().map((c, i) => (c - cpu0[i]!) / 1e6 / storm.windowSec);
    for (const r of reports) errors.push(...r.errors);
    const tot = pool.totals();
    const firstNs = Math.min(...reports.map((r) => r.firstNs));
    const lastNs = Math.max(...reports.map((r) => r.lastNs));
    const stormSec = Math.max(1e-9, (lastNs - firstNs) / 1e9);
    const connack = summarize(mergeHistograms(reports.map((r) => r.histogram)));
    const metrics: Record<string, number> = {
      connected: tot.connected,
      failed: tot.failed,
      connectsPerSec: tot.connected / stormSec,
      stormSec,
    };

    let idleSample = storm;
    if (idle) {
      // Let the broker finish allocating (and a GC'd runtime settle) before reading memory.
      ctx.progress.update(`${ctx.label}: ${tot.connected} connected, settling ${o.settle}s`);
      const idleMeter = new WindowMeter(ctx.brokerPid);
      idleMeter.start();
      await sleep(o.settle * 1000);
      idleSample = idleMeter.end();
      const alive = pool.totals();
      metrics.disconnects = alive.disconnects;
      if (ctx.brokerPid) {
        const after = idleSample.broker!.rssEndKb;
        metrics.rssBeforeKb = rssBeforeKb;
        metrics.rssAfterKb = after;
        metrics.bytesPerConnection = tot.connected > 0 ? ((after - rssBeforeKb) * 1024) / tot.connected : 0;
        metrics.idleBrokerCores = idleSample.broker!.cores;
      } else errors.push('no broker pid: memory per connection not measured (pass --pid)');
    }
    pool.broadcast({ type: 'stop' });
    for (const r of await pool.collect('result', 20_000)) errors.push(...r.errors);

    const primary =
      idle && metrics.bytesPerConnection !== undefined
        ? { name: 'memory per connection', value: metrics.bytesPerConnection / 1024, unit: 'KiB', higherIsBetter: false }
        : { name: 'connections', value: metrics.connectsPerSec!, unit: 'conn/s', higherIsBetter: true };
    return {
      scenario: o.scenario,
      options: o,
      startedAt,
      windowSec: storm.windowSec,
      primary,
      metrics,
      latency: connack,
      generator: { ...storm.generator, workers, threads },
      broker: idle && idleSample.broker ? { ...idleSample.broker, rssStartKb: rssBeforeKb } : storm.broker,
      machineBusy: storm.machineBusy,
      machineCores: storm.machineCores,
      otherCores: idle ? idleSample.otherCores : storm.otherCores,
      limitedBy: idle ? 'n/a' : limitedBy({ threads, machineBusy: storm.machineBusy, broker: storm.broker, paced: o.connectRate > 0 }),
      errors: [...new Set(errors)],
    };
  } finally {
    await pool.terminate();
  }
}
