// Human-readable summary of one scenario result, printed after a single run.

import type { ScenarioResult } from '../types.ts';

export function fmtNum(v: number, digits = 0): string {
  return v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function fmtUs(us: number): string {
  return us >= 10_000 ? `${fmtNum(us / 1000, 1)} ms` : `${fmtNum(us)} µs`;
}

export function formatResult(r: ScenarioResult): string {
  const o = r.options;
  const m = r.metrics;
  const lines: string[] = [];
  const qos = r.scenario === 'connect-storm' || r.scenario === 'idle' ? '' : ` QoS ${o.qos}, ${o.size} B payload,`;
  lines.push(`${r.scenario}:${qos} MQTT ${o.protocol === 4 ? '3.1.1' : '5'}, window ${r.windowSec.toFixed(2)} s`);
  lines.push(`  ${r.primary.name}: ${fmtNum(r.primary.value, r.primary.unit === 'KiB' ? 2 : 0)} ${r.primary.unit}`);
  if (m.deliveredPerSec !== undefined) {
    lines.push(
      `  sent ${fmtNum(m.sentPerSec!)} msg/s, delivered ${fmtNum(m.deliveredPerSec)} msg/s` +
        (o.qos > 0 ? `, acknowledged ${fmtNum(m.ackedPerSec!)} msg/s` : '') +
        ` (${m.publishers} pub -> ${m.subscribers} sub, delivery ratio ${fmtNum(m.deliveryRatio! * 100, 1)}%)`,
    );
  }
  if (m.connectsPerSec !== undefined) {
    lines.push(`  ${fmtNum(m.connected!)} connected, ${fmtNum(m.failed!)} failed, ${fmtNum(m.connectsPerSec)} conn/s`);
  }
  if (m.bytesPerConnection !== undefined) {
    lines.push(
      `  broker RSS ${fmtNum(m.rssBeforeKb! / 1024, 1)} MiB -> ${fmtNum(m.rssAfterKb! / 1024, 1)} MiB: ` +
        `${fmtNum(m.bytesPerConnection / 1024, 2)} KiB per connection`,
    );
  }
  if (r.latency && r.latency.count > 0) {
    const l = r.latency;
    const what = r.scenario === 'connect-storm' || r.scenario === 'idle' ? 'CONNACK time' : 'latency';
    lines.push(
      `  ${what} (n=${fmtNum(l.count)}): p50 ${fmtUs(l.p50)}, p99 ${fmtUs(l.p99)}, p99.9 ${fmtUs(l.p999)}, max ${fmtUs(l.max)}`,
    );
  }
  lines.push(
    `  generator CPU ${fmtNum(r.generator.cores * 100)}% of a core (${r.generator.workers} worker threads, busiest ${fmtNum(Math.max(0, ...r.generator.threads) * 100)}%)` +
      (r.broker ? `, broker CPU ${fmtNum(r.broker.cores * 100)}%, broker RSS ${fmtNum(r.broker.rssEndKb / 1024, 1)} MiB` : '') +
      `, machine ${fmtNum(r.machineBusy * 100)}% busy of ${r.machineCores} cores` +
      (r.backgroundBusy !== undefined ? ` (${fmtNum(r.backgroundBusy * 100)}% before the run)` : '') +
      `, other processes ${fmtNum(r.otherCores * 100)}% of a core`,
  );
  lines.push(`  limited by: ${r.limitedBy}`
  );
  for (const e of r.errors.slice(0, 5)) lines.push(`  ! ${e}`);
  return lines.join('\n');
}
