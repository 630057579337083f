// Draws the dashboard's panels from a real run, without Prometheus or Grafana:
//   pnpm exec node deploy/grafana/render-panels.ts [--seconds 20] [--out docs/img]
// Starts a redis-server and two Starling nodes on loopback, puts a small bounded load on them (publishers,
// subscribers, a persistent session that goes away and comes back, connection churn with wills, session
// takeovers, refused CONNECTs) for --seconds, scrapes both nodes' /metrics every second (adding the
// `pod` label a Prometheus scrape in Kubernetes adds), evaluates each panel's PromQL over the scrapes
// (promql.ts) and writes one PNG per panel, plus an overview, via SVG and rsvg-convert (Debian:
// librsvg2-bin). Without redis-server it runs one node and the cluster panels stay empty.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { PANELS, type PanelSpec } from './dashboard.ts';
import { evaluate, legend, parseExposition, type Scrape } from './promql.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ENTRY = path.join(REPO, 'packages/core/src/bin/starling.ts');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const LOAD_SECONDS = Math.min(60, Number(arg('seconds', '20')));
const OUT = path.resolve(REPO, arg('out', 'docs/img'));
const SCRAPE_MS = 1000;
/** Grafana's $__rate_interval for a 1 s scrape: four scrape intervals (plus one for smoothing here). */
const RATE_INTERVAL = 5;
const IDLE_BEFORE = 3;
const IDLE_AFTER = 4;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as net.AddressInfo;
  s.close();
  await once(s, 'close');
  return port;
}

// ---- processes ----------------------------------------------------------------------------------------

const children: ChildProcess[] = [];

async function startRedis(): Promise<string | null> {
  if (spawnSync('redis-server', ['--version']).status !== 0) return null;
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', os.tmpdir()], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('redis-server did not start')), 10_000);
    readline.createInterface({ input: proc.stdout! }).on('line', (l) => {
      if (l.includes('Ready to accept connections')) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  return `redis://127.0.0.1:${port}`;
}

interface Node {
  id: string;
  port: number;
  metricsPort: number;
  proc: ChildProcess;
}

async function startNode(id: string, redisUrl: string | null): Promise<Node> {
  const args = [
    ENTRY, '--nodeId', id, '--host', '127.0.0.1', '--port', '0', '--metrics.host', '127.0.0.1', '--metrics.port', '0',
    '--workers', '2', '--logLevel', 'info', '--sys.intervalMs', '0',
    // A small offline queue, so the run shows it filling and overflowing.
    '--limits.maxQueued', '600',
    ...(redisUrl ? ['--redis.url', redisUrl, '--redis.keyPrefix', `render-${process.pid}:`, '--redis.heartbeatMs', '500', '--redis.nodeTtlMs', '2000'] : []),
  ];
  const proc = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${id} did not start`)), 20_000);
    proc.once('exit', (code) => reject(new Error(`${id} exited with ${code}`)));
    readline.createInterface({ input: proc.stdout! }).on('line', (l) => {
      try {
        const j = JSON.parse(l) as { msg?: string; port?: number; metricsPort?: number };
        if (j.msg === 'starling listening') {
          clearTimeout(t);
          resolve({ id, port: j.port!, metricsPort: j.metricsPort!, proc });
        }
      } catch {
        /* not JSON */
      }
    });
  });
}

// ---- load ---------------------------------------------------------------------------------------------

function connect(node: Node, opts: mqtt.IClientOptions): Promise<MqttClient> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${node.port}`, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 5, ...opts });
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

/** A v3.1.1 CONNECT with an empty client id and no clean session: refused with identifier_rejected. */
function refusedConnect(node: Node): void {
  const s = net.connect(node.port, '127.0.0.1', () => s.write(Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x00, 0x00, 0x3c, 0x00, 0x00])));
  s.on('error', () => undefined);
  s.on('data', () => s.destroy());
  setTimeout(() => s.destroy(), 1000).unref();
}

async function runLoad(nodes: Node[], seconds: number): Promise<void> {
  const clients: MqttClient[] = [];
  const timers: NodeJS.Timeout[] = [];
  const payload = Buffer.alloc(200, 'x');
  const nodeAt = (i: number) => nodes[i % nodes.length]!;

  // Subscribers: two per node, to everything the publishers send.
  for (let i = 0; i < 2 * nodes.length; i++) {
    const c = await connect(nodeAt(i), { clientId: `render-sub-${i}` });
    await c.subscribeAsync('load/#', { qos: 1 });
    clients.push(c);
  }
  // A persistent session that leaves after 4 s and comes back 12 s later: its queue fills while away
  // (QoS 0 is dropped for it, QoS 1 queued up to limits.maxQueued, then dropped as queue_full).
  const persistent = { clientId: 'render-persistent', clean: false, properties: { sessionExpiryInterval: 3600 } };
  let away = await connect(nodeAt(1), persistent);
  await away.subscribeAsync('load/#', { qos: 1 });
  timers.push(setTimeout(() => void away.endAsync().catch(() => undefined), 4000));
  timers.push(
    setTimeout(() => {
      void connect(nodeAt(0), persistent).then((c) => {
        away = c;
        clients.push(c);
      });
    }, 16_000),
  );

  // Publishers: two per node, 50 messages/s each, QoS 0 and 1 alternating; twice as fast after 10 s.
  const publishers: MqttClient[] = [];
  for (let i = 0; i < 2 * nodes.length; i++) publishers.push(await connect(nodeAt(i + 1), { clientId: `render-pub-${i}` }));
  clients.push(...publishers);
  let n = 0;
  const started = Date.now();
  timers.push(
    setInterval(() => {
      const burst = Date.now() - started > 10_000 ? 2 : 1;
      for (const [i, p] of publishers.entries()) for (let b = 0; b < burst; b++) p.publish(`load/${i}`, payload, { qos: n++ % 2 === 0 ? 0 : 1 });
    }, 20),
  );

  // Churn: a short-lived client with a will every 400 ms; every other one vanishes without DISCONNECT
  // (socket_closed, its will published), the rest disconnect cleanly.
  let churn = 0;
  timers.push(
    setInterval(() => {
      const k = churn++;
      void connect(nodeAt(k), { clientId: `render-churn-${k}`, will: { topic: `status/${k}`, payload: Buffer.from('offline'), qos: 0, retain: false } }).then((c) => {
        setTimeout(() => (k % 2 === 0 ? c.stream.destroy() : void c.endAsync().catch(() => undefined)), 300);
      }, () => undefined);
    }, 400),
  );
  // Takeovers: the same client id connects again every 1.5 s (on alternating nodes).
  let dup = 0;
  let prevDup: MqttClient | null = null;
  timers.push(
    setInterval(() => {
      void connect(nodeAt(dup++), { clientId: 'render-duplicate-id' }).then((c) => {
        prevDup?.end(true);
        prevDup = c;
      }, () => undefined);
    }, 1500),
  );
  // Refused CONNECTs now and then.
  let refused = 0;
  timers.push(setInterval(() => refusedConnect(nodeAt(refused++)), 700));

  await sleep(seconds * 1000);
  for (const t of timers) clearInterval(t);
  await Promise.all([...clients, away, ...(prevDup ? [prevDup] : [])].map((c) => c.endAsync(true).catch(() => undefined)));
}

// ---- scraping -----------------------------------------------------------------------------------------

async function scrapeLoop(nodes: Node[], t0: number, stop: { done: boolean }, into: Scrape[]): Promise<void> {
  while (!stop.done) {
    const tick = Date.now();
    const samples = (
      await Promise.all(
        nodes.map(async (n) => {
          try {
            const res = await fetch(`http://127.0.0.1:${n.metricsPort}/metrics`);
            return parseExposition(await res.text(), { pod: n.id });
          } catch {
            return [];
          }
        }),
      )
    ).flat();
    into.push({ t: (tick - t0) / 1000, samples });
    await sleep(Math.max(0, SCRAPE_MS - (Date.now() - tick)));
  }
}

// ---- drawing ------------------------------------------------------------------------------------------

const PALETTE = ['#73bf69', '#f2cc0c', '#8ab8ff', '#ff780a', '#f2495c', '#5794f2', '#b877d9', '#705da0', '#37872d', '#fade2a', '#ff9830', '#c4162a'];
const W = 760;
const H = 300;
const PLOT = { left: 64, top: 40, right: 236, bottom: 36 };

interface Series {
  name: string;
  points: Array<[number, number]>;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function format(v: number, unit: string): string {
  if (!Number.isFinite(v)) return '–';
  const trim = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1).replace(/\.0$/, '') : x.toFixed(2).replace(/\.?0+$/, ''));
  if (unit === 's') {
    if (v === 0) return '0';
    if (Math.abs(v) < 1e-3) return `${trim(v * 1e6)} µs`;
    if (Math.abs(v) < 1) return `${trim(v * 1e3)} ms`;
    return `${trim(v)} s`;
  }
  const suffix = unit === 'reqps' ? '/s' : unit === 'Bps' ? 'B/s' : '';
  const [d, p] = Math.abs(v) >= 1e6 ? [1e6, 'M'] : Math.abs(v) >= 1e3 ? [1e3, 'k'] : [1, ''];
  return `${trim(v / d)}${unit === 'Bps' ? ` ${p}` : p}${suffix}`.trim();
}

/** The axis top: four ticks of a round step (1, 2, 2.5 or 5 × 10^k) covering v. */
function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const raw = v / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return 4 * m * p;
  return 40 * p;
}

/** One panel as an SVG group at (x, y). */
function panelSvg(spec: PanelSpec, series: Series[], span: [number, number], hidden: number, x = 0, y = 0): string {
  const pw = W - PLOT.left - PLOT.right;
  const ph = H - PLOT.top - PLOT.bottom;
  const [t0, t1] = span;
  const stackedTotals = new Map<number, number>();
  let max = 0;
  for (const s of series) {
    for (const [t, v] of s.points) {
      if (!Number.isFinite(v)) continue;
      if (spec.stacked) stackedTotals.set(t, (stackedTotals.get(t) ?? 0) + v);
      else max = Math.max(max, v);
    }
  }
  if (spec.stacked) max = Math.max(0, ...stackedTotals.values());
  const top = niceMax(max);
  const sx = (t: number) => PLOT.left + ((t - t0) / (t1 - t0)) * pw;
  const sy = (v: number) => PLOT.top + ph - (v / top) * ph;
  const out: string[] = [];
  out.push(`<g transform="translate(${x},${y})">`);
  out.push(`<rect x="0.5" y="0.5" width="${W - 1}" height="${H - 1}" rx="4" fill="#181b1f" stroke="#2c3235"/>`);
  out.push(`<text x="12" y="24" font-size="14" font-weight="600" fill="#d8d9da">${esc(spec.title)}</text>`);
  // grid and y ticks
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    const yy = sy(v);
    out.push(`<line x1="${PLOT.left}" x2="${PLOT.left + pw}" y1="${yy}" y2="${yy}" stroke="#2c3235"/>`);
    out.push(`<text x="${PLOT.left - 6}" y="${yy + 4}" font-size="11" fill="#9fa7b3" text-anchor="end">${esc(format(v, spec.unit))}</text>`);
  }
  const step = t1 - t0 > 40 ? 10 : 5;
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    out.push(`<line x1="${sx(t)}" x2="${sx(t)}" y1="${PLOT.top}" y2="${PLOT.top + ph}" stroke="#22252b"/>`);
    out.push(`<text x="${sx(t)}" y="${PLOT.top + ph + 16}" font-size="11" fill="#9fa7b3" text-anchor="middle">${t}s</text>`);
  }
  out.push(`<text x="${PLOT.left + pw}" y="${H - 6}" font-size="10" fill="#6e7580" text-anchor="end">seconds since the load started</text>`);
  // series
  const base = new Map<number, number>();
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const pts = s.points.filter(([, v]) => Number.isFinite(v));
    if (pts.length === 0) return;
    if (spec.stacked) {
      const upper = pts.map(([t, v]) => [t, (base.get(t) ?? 0) + v] as [number, number]);
      const lower = pts.map(([t]) => [t, base.get(t) ?? 0] as [number, number]);
      const poly = [...upper, ...lower.reverse()].map(([t, v]) => `${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join(' ');
      out.push(`<polygon points="${poly}" fill="${color}" fill-opacity="0.55" stroke="none"/>`);
      out.push(`<polyline points="${upper.map(([t, v]) => `${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join(' ')}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
      for (const [t, v] of upper) base.set(t, v);
    } else {
      out.push(`<polyline points="${pts.map(([t, v]) => `${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`);
    }
  });
  // legend: name and last value
  const lx = PLOT.left + pw + 14;
  out.push(`<text x="${lx}" y="${PLOT.top}" font-size="10" fill="#6e7580">series</text><text x="${W - 12}" y="${PLOT.top}" font-size="10" fill="#6e7580" text-anchor="end">last</text>`);
  const rows = series.slice(0, 11);
  rows.forEach((s, i) => {
    const yy = PLOT.top + 18 + i * 17;
    const last = [...s.points].reverse().find(([, v]) => Number.isFinite(v))?.[1] ?? Number.NaN;
    const name = s.name.length > 22 ? `${s.name.slice(0, 21)}…` : s.name;
    out.push(`<rect x="${lx}" y="${yy - 8}" width="10" height="4" fill="${PALETTE[i % PALETTE.length]}"/>`);
    out.push(`<text x="${lx + 16}" y="${yy}" font-size="11" fill="#ccccdc">${esc(name)}</text>`);
    out.push(`<text x="${W - 12}" y="${yy}" font-size="11" fill="#ccccdc" text-anchor="end">${esc(format(last, spec.unit))}</text>`);
  });
  const notes: string[] = [];
  if (series.length > rows.length) notes.push(`+${series.length - rows.length} more`);
  if (hidden > 0) notes.push(`${hidden} series at 0 not shown`);
  if (series.length === 0) notes.push('no data in this run');
  if (notes.length) out.push(`<text x="${lx}" y="${PLOT.top + 18 + rows.length * 17 + 4}" font-size="10" fill="#6e7580">${esc(notes.join('; '))}</text>`);
  out.push('</g>');
  return out.join('\n');
}

function svgDoc(width: number, height: number, body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n<rect width="100%" height="100%" fill="#111217"/>\n${body}\n</svg>\n`;
}

function toPng(svg: string, file: string, zoom = 1.5): void {
  const svgFile = file.replace(/\.png$/, '.svg');
  const tmp = path.join(os.tmpdir(), path.basename(svgFile));
  fs.writeFileSync(tmp, svg);
  const r = spawnSync('rsvg-convert', ['--zoom', String(zoom), '-o', file, tmp], { encoding: 'utf8' });
  if (r.status !== 0) {
    fs.copyFileSync(tmp, svgFile);
    throw new Error(`rsvg-convert failed (apt-get install librsvg2-bin); SVG left at ${svgFile}: ${r.stderr ?? r.error}`);
  }
  fs.rmSync(tmp);
}

/** A panel's series over the run: one per (target, legend), evaluated at every scrape. */
export function panelSeries(spec: PanelSpec, scrapes: Scrape[], from: number): { series: Series[]; hidden: number } {
  const byName = new Map<string, Series>();
  for (const s of scrapes) {
    if (s.t < from) continue;
    for (const target of spec.targets) {
      for (const item of evaluate(target.expr, scrapes, s.t, { rateInterval: RATE_INTERVAL, vars: { pod: '.*' } })) {
        const name = legend(target.legendFormat, item.labels) || target.expr;
        let e = byName.get(name);
        if (!e) byName.set(name, (e = { name, points: [] }));
        e.points.push([s.t, item.value]);
      }
    }
  }
  const all = [...byName.values()];
  const shown = all.filter((s) => s.points.some(([, v]) => Number.isFinite(v) && v !== 0));
  // Stacked: biggest at the bottom; lines: in the order the targets define.
  if (spec.stacked) shown.sort((a, b) => b.points.reduce((x, [, v]) => x + v, 0) - a.points.reduce((x, [, v]) => x + v, 0));
  return { series: shown, hidden: all.length - shown.length };
}

async function main(): Promise<void> {
  fs.mkdirSync(OUT, { recursive: true });
  const redisUrl = await startRedis();
  const nodes: Node[] = [];
  try {
    nodes.push(await startNode('starling-0', redisUrl));
    if (redisUrl) nodes.push(await startNode('starling-1', redisUrl));
    process.stdout.write(`${nodes.length} node(s)${redisUrl ? ' sharing a redis-server' : ' (no redis-server: cluster panels stay empty)'}; load for ${LOAD_SECONDS} s\n`);
    await sleep(1500); // membership settles
    const scrapes: Scrape[] = [];
    const stop = { done: false };
    const t0 = Date.now() + IDLE_BEFORE * 1000;
    const scraping = scrapeLoop(nodes, t0, stop, scrapes);
    await sleep(IDLE_BEFORE * 1000);
    await runLoad(nodes, LOAD_SECONDS);
    await sleep(IDLE_AFTER * 1000);
    stop.done = true;
    await scraping;

    const span: [number, number] = [-IDLE_BEFORE + 1, LOAD_SECONDS + IDLE_AFTER];
    const rendered: string[] = [];
    for (const spec of PANELS) {
      const { series, hidden } = panelSeries(spec, scrapes, span[0]);
      const body = panelSvg(spec, series, span, hidden);
      const file = path.join(OUT, `dashboard-${spec.slug}.png`);
      toPng(svgDoc(W, H, body), file);
      rendered.push(panelSvg(spec, series, span, hidden, 0, 0));
      process.stdout.write(`${path.relative(REPO, file)}: ${series.length} series\n`);
    }
    // The overview: every panel, two to a row, as on the dashboard.
    const gap = 12;
    const cols = 2;
    const rows = Math.ceil(rendered.length / cols);
    const ow = cols * W + (cols + 1) * gap;
    const oh = rows * H + (rows + 1) * gap;
    const groups = rendered.map((g, i) => g.replace('<g transform="translate(0,0)">', `<g transform="translate(${gap + (i % cols) * (W + gap)},${gap + Math.floor(i / cols) * (H + gap)})">`));
    const overview = path.join(OUT, 'dashboard-overview.png');
    toPng(svgDoc(ow, oh, groups.join('\n')), overview, 1);
    process.stdout.write(`${path.relative(REPO, overview)}\n`);
  } finally {
    for (const c of children.reverse()) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGTERM');
        await Promise.race([once(c, 'exit'), sleep(15_000)]);
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }
    }
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`${err.stack ?? err.message}\n`);
      for (const c of children) c.kill('SIGKILL');
      process.exit(1);
    },
  );
}
