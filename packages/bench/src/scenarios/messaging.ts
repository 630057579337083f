// fan-in, fan-out, pairs, cluster and latency: publishers send, subscribers count. Timeline:
// connect everything -> go -> warmup -> measured window -> stop. Counts come from shared memory
// snapshots at the window edges; latency only from messages sent inside the window.

import { mergeHistograms, summarize } from '../latency.ts';
import { WorkerPool } from '../load/pool.ts';
import type { MessagingPlan } from '../load/protocol.ts';
import type { Totals } from '../load/totals.ts';
import { fmtRate } from '../progress.ts';
import type { RunOptions, ScenarioResult } from '../types.ts';
import type { RunContext } from './context.ts';
import { sleep, WindowMeter, type WindowSample } from './meter.ts';
import { assignWorkers, buildTopology } from './topology.ts';
import { limitedBy } from './bottleneck.ts';

export async function runMessaging(o: RunOptions, ctx: RunContext): Promise<ScenarioResult> {
  const startedAt = new Date().toISOString();
  const topo = buildTopology(o);
  const stamp = o.rate > 0 && o.size >= 8;
  const workers = Math.max(1, Math.min(o.workers, topo.pubs.length + topo.subs.length));
  const shares = assignWorkers(topo.pubs, topo.subs, workers);
  const pool = new WorkerPool(workers);
  const errors: string[] = [];
  try {
    shares.forEach((share, slot) => {
      const plan: MessagingPlan = {
        kind: 'messaging',
        protocol: o.protocol,
        qos: o.qos,
        size: o.size,
        inflight: o.inflight,
        keepalive: o.keepalive,
        concurrency: Math.max(1, Math.ceil(o.concurrency / workers)),
        stamp,
        pubs: share.pubs,
        subs: share.subs,
      };
      pool.post(slot, { type: 'setup', plan });
    });
    ctx.progress.update(`${ctx.label}: connecting ${topo.pubs.length} publishers, ${topo.subs.length} subscribers`);
    for (const r of await pool.collect('ready', 180_000)) errors.push(...r.errors);
    const connected = pool.totals().connected;
    const wanted = topo.pubs.length + topo.subs.length;
    if (connected < wanted) throw new Error(`only ${connected}/${wanted} clients connected: ${errors.join('; ')}`);

    const goNs = pool.nowNs();
    const windowStartNs = goNs + o.warmup * 1e9;
    const windowEndNs = windowStartNs + o.duration * 1e9;
    pool.broadcast({ type: 'go', windowStartNs, windowEndNs });

    const meter = new WindowMeter(ctx.brokerPid);
    const totalQuota = topo.pubs.reduce((a, p) => a + p.quota, 0);
    let first: Totals | null = null;
    let firstCpu: number[] = [];
    let threads: number[] = [];
    let last: Totals = pool.totals();
    let sample: WindowSample | null = null;
    let stalledSinceNs = 0;
    const hardEndNs = windowEndNs + 30e9;
    // Progress rates are over the last ~second: sends are bursty when socket buffers fill.
    const history: Array<{ t: number; tot: Totals }> = [{ t: goNs, tot: last }];
    for (;;) {
      await sleep(100);
      const t = pool.nowNs();
      const tot = pool.totals();
      meter.poll();
      history.push({ t, tot });
      while (history.length > 2 && t - history[1]!.t >= 1e9) history.shift();
      const ref = history[0]!;
      const dt = (t - ref.t) / 1e9;
      const rate = (k: keyof Totals): string => fmtRate((tot[k] - ref.tot[k]) / dt);
      const phase = first ? 'measuring' : 'warmup';
      const left = Math.max(0, (windowEndNs - t) / 1e9);
      ctx.progress.update(
        `${ctx.label}: ${phase} ${left.toFixed(1)}s left | sent ${rate('sent')}` +
          (o.qos > 0 ? ` acked ${rate('acked')}` : '') +
          ` delivered ${rate('delivered')} | delivered so far ${tot.delivered}`,
      );
      // The quota is used up and nothing moves any more: end the window early.
      const exhausted = tot.sent >= totalQuota && tot.delivered === last.delivered;
      stalledSinceNs = exhausted ? stalledSinceNs || t : 0;
      const stalled = stalledSinceNs > 0 && t - stalledSinceNs > 1e9;
      last = tot;
      if (!first && (t >= windowStartNs || stalled)) {
        first = tot;
        firstCpu = pool.threadCpu();
        meter.start();
      } else if (first && (t >= windowEndNs || stalled || t >= hardEndNs)) {
        sample = meter.end();
        threads = pool.threadCpu().map((c, i) => (c - firstCpu[i]!) / 1e6 / sample!.windowSec);
        if (stalled && t < windowEndNs) errors.push('message cap (--max-messages) reached before the window ended');
        break;
      }
    }
    const totalsAtEnd = last;
    // Stop publishing, then let what is still queued in sockets and the broker arrive (up to 5 s
    // or 0.5 s without progress) so the delivery ratio says "lost", not "still in flight".
    pool.broadcast({ type: 'halt' });
    await pool.collect('halted', 10_000);
    let prev = pool.totals().delivered;
    for (let quiet = 0, waited = 0; quiet < 5 && waited < 50; waited++) {
      await sleep(100);
      const cur = pool.totals().delivered;
      quiet = cur === prev ? quiet + 1 : 0;
      prev = cur;
      ctx.progress.update(`${ctx.label}: draining, delivered so far ${cur}`);
    }
    const after = pool.totals();
    pool.broadcast({ type: 'stop' });
    const results = await pool.collect('result', 20_000);
    for (const r of results) errors.push(...r.errors);

    const win = sample!.windowSec;
    const d = (k: keyof Totals): number => (totalsAtEnd[k] - first![k]) / win;
    const metrics: Record<string, number> = {
      deliveredPerSec: d('delivered'),
      sentPerSec: d('sent'),
      ackedPerSec: o.qos > 0 ? d('acked') : 0,
      windowDelivered: totalsAtEnd.delivered - first!.delivered,
      totalSent: after.sent,
      totalDelivered: after.delivered,
      // Everything published reached every subscriber it should have? (<1 = loss or in flight at stop)
      deliveryRatio: after.sent > 0 ? after.delivered / (after.sent * topo.fanout) : 0,
      publishers: topo.pubs.length,
      subscribers: topo.subs.length,
      fanout: topo.fanout,
      disconnects: after.disconnects,
    };
    const hists = results.map((r) => r.histogram).filter((h): h is string => h !== null);
    const latency = stamp && hists.length > 0 ? summarize(mergeHistograms(hists)) : undefined;
    const isLatency = o.scenario === 'latency';
    if (isLatency && latency) metrics.latencyP99Us = latency.p99;
    return {
      scenario: o.scenario,
      options: o,
      startedAt,
      windowSec: win,
      primary:
        isLatency && latency
          ? { name: 'p99 latency', value: latency.p99, unit: 'µs', higherIsBetter: false }
          : { name: 'delivered', value: metrics.deliveredPerSec!, unit: 'msg/s', higherIsBetter: true },
      metrics,
      latency,
      generator: { ...sample!.generator, workers, threads },
      broker: sample!.broker,
      machineBusy: sample!.machineBusy,
      machineCores: sample!.machineCores,
      otherCores: sample!.otherCores,
      limitedBy: limitedBy({ threads, machineBusy: sample!.machineBusy, broker: sample!.broker, paced: o.rate > 0 }),
      errors,
    };
  } finally {
    await pool.terminate();
  }
}
