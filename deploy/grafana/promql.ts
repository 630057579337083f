// The part of PromQL the Starling dashboard uses — selectors with label matchers, rate/irate/increase,
// sum/min/max/avg/count by (…), histogram_quantile — parsed, and evaluated over scrapes held in memory.
// Used to list the metrics the dashboard queries (test/deploy-dashboard.test.ts) and to draw its panels
// from a real run without Prometheus or Grafana (render-panels.ts). Anything outside the subset is a
// parse error, so a panel using more PromQL than this understands is noticed, not silently misdrawn.

export type Labels = Record<string, string>;

export type Node =
  | { type: 'number'; value: number }
  | { type: 'selector'; name: string; matchers: Matcher[]; range?: string }
  | { type: 'call'; fn: string; args: Node[] }
  | { type: 'aggregate'; op: string; by: string[] | null; expr: Node };

export interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

const AGGREGATES = new Set(['sum', 'min', 'max', 'avg', 'count']);
const FUNCTIONS = new Set(['rate', 'irate', 'increase', 'histogram_quantile']);

type Token = { kind: 'ident' | 'number' | 'string' | 'punct' | 'range'; text: string };

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '[') {
      const end = src.indexOf(']', i);
      if (end < 0) throw new Error(`unclosed [ in ${src}`);
      out.push({ kind: 'range', text: src.slice(i + 1, end).trim() });
      i = end + 1;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\') j++;
        s += src[j];
        j++;
      }
      out.push({ kind: 'string', text: s });
      i = j + 1;
    } else if (/[0-9.]/.test(c)) {
      const m = /^[0-9.]+(e[+-]?\d+)?/.exec(src.slice(i))!;
      out.push({ kind: 'number', text: m[0] });
      i += m[0].length;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(src.slice(i))!;
      out.push({ kind: 'ident', text: m[0] });
      i += m[0].length;
    } else {
      const two = src.slice(i, i + 2);
      if (two === '=~' || two === '!~' || two === '!=') {
        out.push({ kind: 'punct', text: two });
        i += 2;
      } else if ('(){},='.includes(c)) {
        out.push({ kind: 'punct', text: c });
        i++;
      } else {
        throw new Error(`unsupported PromQL at "${src.slice(i, i + 20)}" in ${src}`);
      }
    }
  }
  return out;
}

export function parse(src: string): Node {
  const toks = tokenize(src);
  let pos = 0;
  const peek = () => toks[pos];
  const next = () => {
    const t = toks[pos++];
    if (!t) throw new Error(`unexpected end of ${src}`);
    return t;
  };
  const expect = (text: string) => {
    const t = next();
    if (t.text !== text || (t.kind !== 'punct' && t.kind !== 'ident')) throw new Error(`expected "${text}", got "${t.text}" in ${src}`);
  };
  const labelList = (): string[] => {
    expect('(');
    const out: string[] = [];
    while (peek()?.text !== ')') {
      const t = next();
      if (t.kind !== 'ident') throw new Error(`expected a label name, got "${t.text}" in ${src}`);
      out.push(t.text);
      if (peek()?.text === ',') next();
    }
    expect(')');
    return out;
  };

  function expr(): Node {
    const t = next();
    if (t.kind === 'number') return { type: 'number', value: Number(t.text) };
    if (t.kind !== 'ident') throw new Error(`unexpected "${t.text}" in ${src}`);
    if (AGGREGATES.has(t.text) && (peek()?.text === '(' || peek()?.text === 'by')) {
      let by: string[] | null = null;
      if (peek()?.text === 'by') {
        next();
        by = labelList();
      }
      expect('(');
      const inner = expr();
      expect(')');
      if (peek()?.text === 'by') {
        next();
        by = labelList();
      }
      return { type: 'aggregate', op: t.text, by, expr: inner };
    }
    if (FUNCTIONS.has(t.text) && peek()?.text === '(') {
      next();
      const args: Node[] = [expr()];
      while (peek()?.text === ',') {
        next();
        args.push(expr());
      }
      expect(')');
      return { type: 'call', fn: t.text, args };
    }
    if (peek()?.text === '(') throw new Error(`unsupported function ${t.text} in ${src}`);
    const matchers: Matcher[] = [];
    if (peek()?.text === '{') {
      next();
      while (peek()?.text !== '}') {
        const label = next();
        const op = next();
        const value = next();
        if (label.kind !== 'ident' || !['=', '!=', '=~', '!~'].includes(op.text) || value.kind !== 'string') throw new Error(`bad matcher in ${src}`);
        matchers.push({ label: label.text, op: op.text as Matcher['op'], value: value.text });
        if (peek()?.text === ',') next();
      }
      expect('}');
    }
    const node: Node = { type: 'selector', name: t.text, matchers };
    if (peek()?.kind === 'range') node.range = next().text;
    return node;
  }

  const root = expr();
  if (pos !== toks.length) throw new Error(`unsupported PromQL after "${toks[pos - 1]?.text}" in ${src} (binary operators are not in the subset)`);
  return root;
}

/** Every metric (sample) name an expression selects. */
export function metricNames(src: string): string[] {
  const names = new Set<string>();
  const walk = (n: Node): void => {
    if (n.type === 'selector') names.add(n.name);
    else if (n.type === 'call') n.args.forEach(walk);
    else if (n.type === 'aggregate') walk(n.expr);
  };
  walk(parse(src));
  return [...names];
}

// ---- evaluation --------------------------------------------------------------------------------------

export interface Sample {
  name: string;
  labels: Labels;
  value: number;
}

/** One scrape of every target: time in seconds and its samples (target labels such as pod included). */
export interface Scrape {
  t: number;
  samples: Sample[];
}

export interface VectorItem {
  labels: Labels;
  value: number;
}

/** Prometheus text exposition → samples (comments and TYPE lines skipped). */
export function parseExposition(text: string, extra: Labels = {}): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Labels = { ...extra };
    for (const p of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[p[1]!] = p[2]!.replace(/\\(.)/g, '$1');
    out.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return out;
}

export interface EvalOptions {
  /** Seconds for $__rate_interval (Grafana: at least four scrape intervals). */
  rateInterval: number;
  /** Dashboard variables, substituted before parsing: { pod: '.*' }. */
  vars?: Record<string, string>;
}

function seconds(range: string, o: EvalOptions): number {
  if (range === '$__rate_interval' || range === '$__interval') return o.rateInterval;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(range);
  if (!m) throw new Error(`unsupported range [${range}]`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 'ms']!;
}

function matcherTest(m: Matcher, v: string | undefined): boolean {
  const value = v ?? '';
  switch (m.op) {
    case '=':
      return value === m.value;
    case '!=':
      return value !== m.value;
    case '=~':
      return new RegExp(`^(?:${m.value})$`).test(value);
    case '!~':
      return !new RegExp(`^(?:${m.value})$`).test(value);
  }
}

const seriesKey = (labels: Labels) =>
  Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');

/** Series of one selector over the scrapes: key → labels and points. */
function series(scrapes: Scrape[], sel: Extract<Node, { type: 'selector' }>, from: number, to: number) {
  const out = new Map<string, { labels: Labels; points: Array<[number, number]> }>();
  for (const s of scrapes) {
    if (s.t <= from || s.t > to) continue;
    for (const smp of s.samples) {
      if (smp.name !== sel.name || !sel.matchers.every((m) => matcherTest(m, smp.labels[m.label]))) continue;
      const key = seriesKey(smp.labels);
      let e = out.get(key);
      if (!e) out.set(key, (e = { labels: smp.labels, points: [] }));
      e.points.push([s.t, smp.value]);
    }
  }
  return out;
}

function evalNode(n: Node, scrapes: Scrape[], t: number, o: EvalOptions): VectorItem[] | number {
  switch (n.type) {
    case 'number':
      return n.value;
    case 'selector': {
      if (n.range) throw new Error(`range selector ${n.name}[${n.range}] outside a function`);
      // Instant: the latest sample within Prometheus' 5-minute look-back.
      const found = series(scrapes, n, t - 300, t);
      return [...found.values()].map((e) => ({ labels: { __name__: n.name, ...e.labels }, value: e.points.at(-1)![1] }));
    }
    case 'call': {
      if (n.fn === 'histogram_quantile') {
        const q = evalNode(n.args[0]!, scrapes, t, o);
        const v = evalNode(n.args[1]!, scrapes, t, o);
        if (typeof q !== 'number' || typeof v === 'number') throw new Error('histogram_quantile(number, vector)');
        return histogramQuantile(q, v);
      }
      const sel = n.args[0]!;
      if (sel.type !== 'selector' || !sel.range) throw new Error(`${n.fn} needs a range selector`);
      const window = seconds(sel.range, o);
      const out: VectorItem[] = [];
      for (const e of series(scrapes, sel, t - window, t).values()) {
        const pts = e.points;
        if (pts.length < 2) continue;
        const labels = { ...e.labels };
        if (n.fn === 'irate') {
          const [[t1, v1], [t2, v2]] = pts.slice(-2) as [[number, number], [number, number]];
          out.push({ labels, value: (v2 < v1 ? v2 : v2 - v1) / (t2 - t1) });
          continue;
        }
        let inc = 0;
        for (let i = 1; i < pts.length; i++) inc += pts[i]![1] < pts[i - 1]![1] ? pts[i]![1] : pts[i]![1] - pts[i - 1]![1];
        const rate = inc / (pts.at(-1)![0] - pts[0]![0]);
        out.push({ labels, value: n.fn === 'rate' ? rate : rate * window });
      }
      return out;
    }
    case 'aggregate': {
      const v = evalNode(n.expr, scrapes, t, o);
      if (typeof v === 'number') throw new Error(`${n.op} of a number`);
      const groups = new Map<string, { labels: Labels; values: number[] }>();
      for (const item of v) {
        const labels: Labels = {};
        for (const l of n.by ?? []) if (item.labels[l] !== undefined) labels[l] = item.labels[l]!;
        const key = seriesKey(labels);
        let g = groups.get(key);
        if (!g) groups.set(key, (g = { labels, values: [] }));
        g.values.push(item.value);
      }
      return [...groups.values()].map(({ labels, values }) => ({
        labels,
        value:
          n.op === 'sum'
            ? values.reduce((a, b) => a + b, 0)
            : n.op === 'min'
              ? Math.min(...values)
              : n.op === 'max'
                ? Math.max(...values)
                : n.op === 'avg'
                  ? values.reduce((a, b) => a + b, 0) / values.length
                  : values.length,
      }));
    }
  }
}

/** Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank. */
export function histogramQuantile(q: number, v: VectorItem[]): VectorItem[] {
  const groups = new Map<string, { labels: Labels; buckets: Array<[number, number]> }>();
  for (const item of v) {
    const { le, __name__, ...rest } = item.labels;
    if (le === undefined) continue;
    const key = seriesKey(rest);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { labels: rest, buckets: [] }));
    g.buckets.push([le === '+Inf' ? Infinity : Number(le), item.value]);
  }
  const out: VectorItem[] = [];
  for (const { labels, buckets } of groups.values()) {
    buckets.sort((a, b) => a[0] - b[0]);
    const total = buckets.at(-1)?.[1] ?? 0;
    if (buckets.length < 2 || buckets.at(-1)![0] !== Infinity || !(total > 0)) continue;
    const rank = q * total;
    let i = buckets.findIndex(([, c]) => c >= rank);
    if (i === buckets.length - 1) {
      out.push({ labels, value: buckets[buckets.length - 2]![0] });
      continue;
    }
    const [upper, count] = buckets[i]!;
    const [lower, below] = i === 0 ? [0, 0] : buckets[i - 1]!;
    out.push({ labels, value: count === below ? upper : lower + ((upper - lower) * (rank - below)) / (count - below) });
  }
  return out;
}

/** An expression at time t over the scrapes. */
export function evaluate(expr: string, scrapes: Scrape[], t: number, o: EvalOptions): VectorItem[] {
  let src = expr;
  for (const [k, v] of Object.entries(o.vars ?? {})) src = src.replaceAll(`$${k}`, v);
  const v = evalNode(parse(src), scrapes, t, o);
  return typeof v === 'number' ? [{ labels: {}, value: v }] : v;
}

/** Grafana's legend: {{label}} replaced by the series' value of it. */
export function legend(format: string, labels: Labels): string {
  return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, l: string) => labels[l] ?? '');
}
