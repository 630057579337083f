// What metrics cost on the hot path: a bounded QoS 0 fan-in load (raw sockets, pre-generated packets)
// against two Starling nodes, one with metrics enabled (and scraped every --scrape-ms, harder than a
// usual Prometheus) and one with metrics.enabled=false. Rounds alternate between the two so drift on a
// shared machine hits both alike. Prints each round, the median throughput of each, and the ratio.
//
//   pnpm exec node test/scripts/metrics-overhead.ts [--publishers 8] [--payload 64] [--seconds 5]
//     [--rounds 3] [--warmup 1] [--workers 2] [--scrape-ms 1000 (0: never scrape)] [--paired] [--aa]
//
// Throughput is messages delivered to the one subscriber per second (QoS 0 to a slow subscriber may be
// dropped, so this is what the node sustains end to end). Loopback only; every loop is bounded in time.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import mqttPacket from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker.ts';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} wants a number`);
  return v;
}

const PUBLISHERS = flag('publishers', 8);
const PAYLOAD = flag('payload', 64);
const SECONDS = flag('seconds', 5);
const ROUNDS = flag('rounds', 3);
const WARMUP = flag('warmup', 1);
const WORKERS = flag('workers', 2);
const SCRAPE_MS = flag('scrape-ms', 1000);
const BATCH = 128; // packets per write

// Everything is bounded: a hard stop well past the planned duration.
const planned = (2 * ROUNDS * (SECONDS + WARMUP + 15) + 120) * 1000;
setTimeout(() => {
  process.stderr.write('metrics-overhead: took too long, giving up\n');
  process.exit(1);
}, planned).unref();

const gen = (p: mqttPacket.Packet): Buffer => mqttPacket.generate(p, { protocolVersion: 4 }) as Buffer;

async function connect(port: number, clientId: string): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  await once(s, 'connect');
  s.setNoDelay(true);
  s.write(gen({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 0 }));
  const [ack] = (await once(s, 'data')) as [Buffer];
  if (ack[0] !== 0x20 || ack[3] !== 0) throw new Error(`${clientId}: CONNACK ${ack.toString('hex')}`);
  return s;
}

function drainedOrClosed(s: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    s.on('drain', done);
    s.on('close', done);
  });
}

/** CPU seconds (user + system, all threads) the process has used: /proc/<pid>/stat, clock ticks of 10 ms. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Load {
  /** Bytes the subscriber has read since it subscribed. */
  delivered(): number;
  packetSize: number;
  stop(): Promise<void>;
}

/** 8 publishers writing pre-generated QoS 0 PUBLISHes as fast as their sockets take them; one subscriber to all. */
async function startLoad(port: number): Promise<Load> {
  const sub = await connect(port, `overhead-sub-${process.pid}`);
  sub.write(gen({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'bench/#', qos: 0 }] }));
  await once(sub, 'data'); // SUBACK
  let bytes = 0;
  sub.on('data', (d: Buffer) => (bytes += d.length));

  const payload = Buffer.alloc(PAYLOAD, 0x61);
  let packetSize = 0;
  const pubs: net.Socket[] = [];
  const batches: Buffer[] = [];
  for (let i = 0; i < PUBLISHERS; i++) {
    const one = gen({ cmd: 'publish', topic: `bench/${String(i).padStart(3, '0')}`, payload, qos: 0, retain: false, dup: false });
    packetSize = one.length; // same topic length for all: the subscriber's bytes / this = messages
    batches.push(Buffer.concat(Array.from({ length: BATCH }, () => one)));
    pubs.push(await connect(port, `overhead-pub-${process.pid}-${i}`));
  }

  let running = true;
  const loops = pubs.map(async (s, i) => {
    const batch = batches[i]!;
    s.on('error', () => undefined);
    while (running && !s.destroyed) {
      if (!s.write(batch)) await drainedOrClosed(s);
      else await new Promise((r) => setImmediate(r));
    }
  });
  return {
    delivered: () => bytes,
    packetSize,
    async stop() {
      running = false;
      await Promise.all(loops);
      for (const s of [...pubs, sub]) s.destroy();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Result {
  rate: number;
  cpuUs: number;
  scrapes: number;
}

/**
 * One round: warm up, then count deliveries over SECONDS (scraping /metrics meanwhile when asked).
 * Several nodes are loaded at the same time over the same window (--paired).
 */
async function round(nodes: Array<{ broker: BrokerProcess; scrape: boolean }>): Promise<Result[]> {
  const loads = await Promise.all(nodes.map((n) => startLoad(n.broker.port)));
  await sleep(WARMUP * 1000);
  let scraping = true;
  const wakes = new Set<() => void>();
  const scrapes = nodes.map(() => 0);
  const scrapers = nodes.map(async ({ broker, scrape }, i) => {
    if (!scrape || SCRAPE_MS <= 0) return;
    while (scraping) {
      const res = await fetch(`http://127.0.0.1:${broker.metricsPort}/metrics`);
      await res.text();
      if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
      scrapes[i]!++;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(t);
          wakes.delete(wake);
          resolve();
        };
        const t = setTimeout(wake, SCRAPE_MS);
        wakes.add(wake);
      });
    }
  });
  const startBytes = loads.map((l) => l.delivered());
  const cpu0 = nodes.map((n) => cpuSeconds(n.broker.child.pid!));
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const messages = loads.map((l, i) => (l.delivered() - startBytes[i]!) / l.packetSize);
  const cpu = nodes.map((n, i) => cpuSeconds(n.broker.child.pid!) - cpu0[i]!);
  const elapsed = (performance.now() - t0) / 1000;
  scraping = false;
  for (const wake of [...wakes]) wake();
  await Promise.all(loads.map((l) => l.stop()));
  await Promise.all(scrapers);
  return nodes.map((_, i) => ({ rate: messages[i]! / elapsed, cpuUs: (cpu[i]! / messages[i]!) * 1e6, scrapes: scrapes[i]! }));
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

// --aa: both modes with metrics disabled, to see this machine's noise floor (expect a ratio near 1).
const AA = process.argv.includes('--aa');
const common = ['--sys.intervalMs', '0'];
const argsFor = (mode: Mode): string[] => (mode === 'enabled' && !AA ? common : [...common, '--metrics.enabled', 'false']);
type Mode = 'enabled' | 'disabled';
console.log(
  `metrics overhead${AA ? ' (A/A: metrics disabled in both)' : ''}: ${PUBLISHERS} publishers -> 1 subscriber, QoS 0, ` +
    `${PAYLOAD}-byte payloads, ${WORKERS} workers, ${ROUNDS} rounds x ${SECONDS} s (+${WARMUP} s warm-up) per mode, ` +
    `a fresh node per round, /metrics scraped every ${SCRAPE_MS} ms when enabled`,
);
const rates: Record<Mode, number[]> = { enabled: [], disabled: [] };
const cpus: Record<Mode, number[]> = { enabled: [], disabled: [] };
// --paired: both nodes run and are loaded at the same time in every round, so whatever else the
// machine does hits both alike (each gets about the same CPU; the cheaper one delivers more).
const PAIRED = process.argv.includes('--paired');
const report = (r: number, mode: Mode, res: Result): void => {
  rates[mode].push(res.rate);
  cpus[mode].push(res.cpuUs);
  console.log(
    `  round ${r + 1} ${mode.padEnd(8)} ${fmt(res.rate).padStart(10)} msg/s  ${res.cpuUs.toFixed(2).padStart(6)} µs broker CPU/msg` +
      (mode === 'enabled' && !AA ? `  (${res.scrapes} scrapes)` : ''),
  );
};
if (PAIRED) console.log('  (paired: both modes loaded at the same time in each round)');
for (let r = 0; r < ROUNDS; r++) {
  const order: Mode[] = r % 2 === 0 ? ['enabled', 'disabled'] : ['disabled', 'enabled'];
  // A fresh process each round: no mode keeps the advantage of a longer-lived (warmer) node.
  if (PAIRED) {
    const brokers = await Promise.all(order.map((mode) => startBroker({ workers: WORKERS, logLevel: 'info', args: argsFor(mode) })));
    try {
      const results = await round(order.map((mode, i) => ({ broker: brokers[i]!, scrape: mode === 'enabled' && !AA })));
      order.forEach((mode, i) => report(r, mode, results[i]!));
    } finally {
      await Promise.all(brokers.map((b) => b.stop()));
    }
    continue;
  }
  for (const mode of order) {
    const broker = await startBroker({ workers: WORKERS, logLevel: 'info', args: argsFor(mode) });
    try {
      report(r, mode, (await round([{ broker, scrape: mode === 'enabled' && !AA }]))[0]!);
    } finally {
      await broker.stop();
    }
  }
}
const on = median(rates.enabled);
const off = median(rates.disabled);
console.log(`median enabled  ${fmt(on).padStart(10)} msg/s`);
console.log(`median disabled ${fmt(off).padStart(10)} msg/s`);
console.log(`ratio enabled/disabled ${(on / off).toFixed(4)}  (metrics cost ${((1 - on / off) * 100).toFixed(2)} % of throughput; goal < 3 %)`);
// Throughput on a shared 2-core machine moves with whatever else runs; CPU per delivered message is
// what metrics could add to, and is far steadier under contention.
const cpuOn = median(cpus.enabled);
const cpuOff = median(cpus.disabled);
console.log(
  `broker CPU per message: enabled ${cpuOn.toFixed(2)} µs, disabled ${cpuOff.toFixed(2)} µs ` +
    `(metrics cost ${((cpuOn / cpuOff - 1) * 100).toFixed(2)} % CPU)`,
);
