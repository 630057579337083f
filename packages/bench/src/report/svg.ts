// Hand-written SVG charts (no charting dependency): grouped horizontal bars with min-max
// whiskers, and grouped vertical bars on a log scale for latency percentiles.

const FONT = 'font-family="system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif"';
const KNOWN_COLORS: Record<string, string> = { starling: '#d9480f', mosquitto: '#1c7ed6', aedes: '#2b8a3e' };
const PALETTE = ['#d9480f', '#1c7ed6', '#2b8a3e', '#7048e8', '#e8590c', '#0b7285', '#c2255c'];

export function colorFor(name: string, index: number): string {
  return KNOWN_COLORS[name] ?? PALETTE[index % PALETTE.length]!;
}

function esc(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(s)}</text>`;
}

export interface Bar {
  label: string;
  value: number;
  min?: number;
  max?: number;
  color: string;
  /** Text shown after the bar; defaults to the formatted value. */
  note?: string;
}

export interface BarGroup {
  title: string;
  bars: Bar[];
}

export interface HBarChart {
  title: string;
  subtitle?: string;
  groups: BarGroup[];
  format: (v: number) => string;
}

/** Each group gets its own scale (scenarios differ by orders of magnitude). */
export function hbarChart(c: HBarChart): string {
  const width = 820;
  const labelW = 120;
  const valueW = 150;
  const plotW = width - labelW - valueW - 20;
  const barH = 18;
  const gap = 5;
  let y = c.subtitle ? 62 : 46;
  const parts: string[] = [];
  for (const g of c.groups) {
    parts.push(text(10, y + 12, g.title, `font-size="13" font-weight="600" fill="#212529"`));
    y += 20;
    const top = Math.max(...g.bars.map((b) => Math.max(b.value, b.max ?? 0)), 1e-12);
    for (const b of g.bars) {
      const w = Math.max(1, (b.value / top) * plotW);
      parts.push(text(labelW - 8, y + barH - 5, b.label, `font-size="12" text-anchor="end" fill="#495057"`));
      parts.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" rx="2" fill="${b.color}"/>`);
      if (b.min !== undefined && b.max !== undefined && b.max > b.min) {
        const x0 = labelW + (b.min / top) * plotW;
        const x1 = labelW + (b.max / top) * plotW;
        const cy = y + barH / 2;
        parts.push(
          `<path d="M${x0.toFixed(1)} ${cy}H${x1.toFixed(1)}M${x0.toFixed(1)} ${cy - 4}v8M${x1.toFixed(1)} ${cy - 4}v8" stroke="#212529" stroke-width="1.2"/>`,
        );
      }
      const endX = labelW + Math.max(w, b.max !== undefined ? (b.max / top) * plotW : 0) + 6;
      parts.push(text(endX, y + barH - 5, b.note ?? c.format(b.value), `font-size="12" fill="#212529"`));
      y += barH + gap;
    }
    y += 14;
  }
  const height = y + 8;
  return frame(width, height, c.title, c.subtitle, parts.join('\n'));
}

export interface LatencySeries {
  label: string;
  color: string;
  /** Microseconds per percentile label. */
  values: Record<string, number>;
}

export function latencyChart(title: string, subtitle: string, percentiles: string[], series: LatencySeries[]): string {
  const width = 820;
  const height = 380;
  const left = 70;
  const right = 20;
  const top = subtitle ? 90 : 74;
  const bottom = 40;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const all = series.flatMap((s) => percentiles.map((p) => s.values[p] ?? 0)).filter((v) => v > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all, 10))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all, lo * 10))));
  const yOf = (v: number): number => top + plotH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH;
  const parts: string[] = [];
  for (let v = lo; v <= hi * 1.0001; v *= 10) {
    const y = yOf(v);
    parts.push(`<line x1="${left}" x2="${width - right}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#dee2e6"/>`);
    parts.push(text(left - 6, y + 4, fmtLatency(v), `font-size="11" text-anchor="end" fill="#495057"`));
  }
  const groupW = plotW / percentiles.length;
  const barW = Math.min(40, (groupW * 0.8) / Math.max(1, series.length));
  percentiles.forEach((p, gi) => {
    const gx = left + gi * groupW + (groupW - barW * series.length) / 2;
    series.forEach((s, si) => {
      const v = s.values[p];
      if (v === undefined || v <= 0) return;
      const y = yOf(v);
      const x = gx + si * barW;
      parts.push(`<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(barW - 3).toFixed(1)}" height="${(top + plotH - y).toFixed(1)}" fill="${s.color}"/>`);
      parts.push(text(x + (barW - 3) / 2, y - 4, fmtLatency(v), `font-size="10" text-anchor="middle" fill="#212529"`));
    });
    parts.push(text(left + gi * groupW + groupW / 2, height - bottom + 20, p, `font-size="12" text-anchor="middle" fill="#212529"`));
  });
  parts.push(legend(series.map((s) => ({ label: s.label, color: s.color })), left, top - 22));
  return frame(width, height, title, subtitle, parts.join('\n'));
}

export function fmtLatency(us: number): string {
  if (us >= 1e6) return `${+(us / 1e6).toPrecision(3)} s`;
  if (us >= 1e3) return `${+(us / 1e3).toPrecision(3)} ms`;
  return `${+us.toPrecision(3)} µs`;
}

function legend(items: Array<{ label: string; color: string }>, x: number, y: number): string {
  let cx = x;
  return items
    .map((it) => {
      const s = `<rect x="${cx}" y="${y - 10}" width="12" height="12" fill="${it.color}"/>${text(cx + 16, y, it.label, `font-size="12" fill="#212529"`)}`;
      cx += 30 + it.label.length * 7;
      return s;
    })
    .join('');
}

function frame(width: number, height: number, title: string, subtitle: string | undefined, body: string): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT}>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    text(10, 24, title, `font-size="16" font-weight="700" fill="#212529"`),
    subtitle ? text(10, 44, subtitle, `font-size="12" fill="#868e96"`) : '',
    body,
    '</svg>',
    '',
  ].join('\n');
}
