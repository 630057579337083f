// Reads /metrics the way Prometheus does.
export async function scrape(metricsPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

/** The value of one series; labels must match exactly the given subset. 0 when absent. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const present: Record<string, string> = {};
    for (const part of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) present[part[1]!] = part[2]!;
    if (Object.entries(labels).every(([k, v]) => present[k] === v)) {
      total += Number(m[4]);
      found = true;
    }
  }
  return found ? total : 0;
}
