// Soak: `node test/scripts/soak.ts [--clients 2000] [--seconds 60] [--rounds 2] [--publishers 20] [--workers 2]`.
// Bounded (at most 5,000 clients, 600 s), loopback only, stops by itself. Clients connect, publish QoS 0/1,
// misbehave (garbage, half a CONNECT, oversized length, PUBLISH before CONNECT, resets) and disconnect,
// while a persistent subscriber hops on and off. Afterwards: broker RSS and open fds back near the
// baseline, and every QoS 1 message acknowledged to a publisher reached the persistent subscriber.
// Exit code 1 when a check fails.
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { startBroker } from '../helpers/broker.ts';
import { metricValue, scrape } from '../helpers/metrics.ts';

function arg(name: string, def: number, max: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return Math.min(i >= 0 ? Number(process.argv[i + 1]) : def, max);
}
const CLIENTS = arg('clients', 2000, 5000);
const SECONDS = arg('seconds', 60, 600);
const PUBLISHERS = arg('publishers', 20, 200);
const WORKERS = arg('workers', 2, 16);
const ROUNDS = arg('rounds', 2, 10);
let round = 0;

const broker = await startBroker({ workers: WORKERS, logLevel: 'info', args: ['--timeouts.connectMs', '3000', '--limits.maxPacketSize', '1048576'] });
const pid = broker.child.pid!;
// Whatever happens to this script, the broker it started goes with it.
process.on('exit', () => broker.child.kill('SIGKILL'));
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const fds = () => readdirSync(`/proc/${pid}/fd`).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw MQTT client: enough protocol for the soak, no library overhead per connection. */
class Client {
  readonly socket: net.Socket;
  private readonly parser: ReturnType<typeof mqttPacket.parser>;
  private readonly version: 4 | 5;
  onPacket: (p: Packet) => void = () => undefined;
  closed = false;
  private readonly closeWaiters: Array<() => void> = [];

  constructor(version: 4 | 5) {
    this.version = version;
    this.socket = net.connect(broker.port, '127.0.0.1');
    this.socket.setNoDelay(true);
    this.parser = mqttPacket.parser({ protocolVersion: version });
    this.parser.on('packet', (p: Packet) => this.onPacket(p));
    this.parser.on('error', () => this.socket.destroy());
    this.socket.on('data', (d: Buffer) => this.parser.parse(d));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      for (const w of this.closeWaiters.splice(0)) w();
    });
  }

  send(p: Packet): void {
    if (!this.closed) this.socket.write(mqttPacket.generate(p, { protocolVersion: this.version }));
  }

  raw(b: Buffer): void {
    if (!this.closed) this.socket.write(b);
  }

  whenClosed(timeoutMs: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.closeWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** CONNECT and CONNACK; false when refused, closed or not answered in time. */
  async connect(clientId: string, clean = true, keepalive = 30): Promise<boolean> {
    const acked = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 15_000);
      const prev = this.onPacket;
      this.onPacket = (p) => {
        if (p.cmd === 'connack') {
          clearTimeout(t);
          this.onPacket = prev;
          resolve(((p.reasonCode ?? p.returnCode) ?? 0) === 0);
        }
      };
      this.socket.once('close', () => resolve(false));
    });
    await new Promise<void>((resolve) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('close', () => resolve());
    });
    this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: this.version, clientId, clean, keepalive });
    return acked;
  }
}

const stats = { connects: 0, refused: 0, qos0: 0, qos1Sent: 0, qos1Acked: 0, misbehaved: 0, peakOpen: 0 };
let open = 0;

// --- The persistent subscriber: QoS 1, clean session 0, hops on and off ------------------------------
const received = new Set<string>();
const SUB_ID = `soak-persistent-${process.pid}`;
let subClient = null as Client | null;
let subscriberRetries = 0;
async function subscriberOnline(): Promise<void> {
  // Bounded retries: on a saturated machine a CONNACK can take longer than the client waits.
  for (let attempt = 0; attempt < 10; attempt++) {
    if (await subscriberAttempt()) return;
    subscriberRetries++;
    console.log(`  persistent subscriber: connect attempt ${attempt + 1} failed; retrying`);
  }
  throw new Error('persistent subscriber refused 10 times');
}
async function subscriberAttempt(): Promise<boolean> {
  const c = new Client(4);
  c.onPacket = (p) => {
    if (p.cmd === 'publish') {
      received.add(p.payload.toString());
      if (p.qos === 1) c.send({ cmd: 'puback', messageId: p.messageId! });
    }
  };
  if (!(await c.connect(SUB_ID, false, 60))) {
    c.socket.destroy();
    return false;
  }
  const subscribed = new Promise<void>((resolve) => {
    const prev = c.onPacket;
    c.onPacket = (p) => {
      if (p.cmd === 'suback') {
        c.onPacket = prev;
        resolve();
      } else prev(p);
    };
  });
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'soak/q1/#', qos: 1 }] });
  await subscribed;
  subClient = c;
  return true;
}

// --- QoS 1 publishers: every PUBACKed message id is recorded ----------------------------------------
const acked = new Set<string>();
const sentAt = new Map<string, number>();
const hops: string[] = [];
async function publisher(n: number, deadline: number): Promise<void> {
  const c = new Client(n % 2 === 0 ? 4 : 5);
  if (!(await c.connect(`soak-pub-${process.pid}-${round}-${n}`))) return;
  const pending = new Map<number, string>();
  c.onPacket = (p) => {
    if (p.cmd === 'puback') {
      const key = pending.get(p.messageId!);
      pending.delete(p.messageId!);
      if (key && ((p.reasonCode ?? 0) === 0)) {
        acked.add(key);
        stats.qos1Acked++;
      }
    }
  };
  let seq = 0;
  while (Date.now() < deadline && !c.closed) {
    const id = (seq % 60000) + 1;
    const key = `r${round}p${n}-${seq++}`;
    pending.set(id, key);
    sentAt.set(key, Date.now() - started);
    c.send({ cmd: 'publish', topic: `soak/q1/${n}`, payload: Buffer.from(key), qos: 1, messageId: id, retain: false, dup: false });
    stats.qos1Sent++;
    await sleep(50);
  }
  await sleep(2000); // last PUBACKs
  c.send({ cmd: 'disconnect' });
  c.socket.end();
}

// --- Churn: CLIENTS slots, each a loop of connect / work / leave (well or badly) --------------------
const MISBEHAVIOURS = ['garbage', 'half-connect', 'oversize', 'publish-first', 'reset', 'reset', 'disconnect', 'disconnect', 'disconnect', 'disconnect'] as const;
async function slot(n: number, deadline: number): Promise<void> {
  await sleep((n / CLIENTS) * 10_000); // ramp up over 10 s
  let rounds = 0;
  while (Date.now() < deadline - 3000 && rounds < 10_000) {
    rounds++;
    const how = MISBEHAVIOURS[Math.floor(Math.random() * MISBEHAVIOURS.length)]!;
    const c = new Client(Math.random() < 0.5 ? 4 : 5);
    open++;
    stats.peakOpen = Math.max(stats.peakOpen, open);
    try {
      if (how === 'half-connect' || how === 'publish-first') {
        await new Promise<void>((r) => {
          c.socket.once('connect', () => r());
          c.socket.once('close', () => r());
        });
        stats.misbehaved++;
        if (how === 'half-connect') c.raw(Buffer.from([0x10, 0x20, 0x00, 0x04, 0x4d])); // a CONNECT that never completes
        else c.send({ cmd: 'publish', topic: 'soak/x', payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
        await c.whenClosed(8000); // the broker's connect timeout (3 s) or protocol error closes it
        c.socket.destroy();
        continue;
      }
      if (!(await c.connect(`soak-${process.pid}-${round}-${n}-${rounds}`))) {
        stats.refused++;
        c.socket.destroy();
        continue;
      }
      stats.connects++;
      if (Math.random() < 0.5) c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `soak/q0/${n % 50}`, qos: 0 }] });
      const holdUntil = Math.min(deadline - 3000, Date.now() + 2000 + Math.random() * 6000);
      while (Date.now() < holdUntil && !c.closed) {
        c.send({ cmd: 'publish', topic: `soak/q0/${(n + rounds) % 50}`, payload: Buffer.alloc(64, n % 256), qos: 0, retain: false, dup: false });
        stats.qos0++;
        await sleep(1000);
      }
      if (how === 'garbage') {
        stats.misbehaved++;
        c.raw(Buffer.from([0xf0, 0x00, 0xde, 0xad, 0xbe, 0xef]));
        await c.whenClosed(5000);
      } else if (how === 'oversize') {
        stats.misbehaved++;
        c.raw(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])); // PUBLISH claiming 256 MiB
        await c.whenClosed(5000);
      } else if (how === 'disconnect') {
        c.send({ cmd: 'disconnect' });
        c.socket.end();
        await c.whenClosed(5000);
      }
      c.socket.destroy(); // 'reset' and anything left
    } finally {
      open--;
    }
    await sleep(Math.random() * 1000);
  }
}

await sleep(1000);
const baseline = { rss: rss(), fds: fds() };
console.log(`soak: ${CLIENTS} clients, ${PUBLISHERS} QoS 1 publishers, ${ROUNDS} round(s) of ${SECONDS} s, ${WORKERS} workers; broker baseline RSS ${baseline.rss.toFixed(0)} MiB, ${baseline.fds} fds`);
await subscriberOnline();
const started = Date.now();
let peakRss = 0;
let peakFds = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, rss());
  peakFds = Math.max(peakFds, fds());
}, 500);
const progress = setInterval(() => {
  console.log(`  ${Math.round((Date.now() - started) / 1000)} s: open ${open}, connects ${stats.connects}, qos1 acked ${stats.qos1Acked}, received ${received.size}, RSS ${rss().toFixed(0)} MiB, fds ${fds()}`);
}, 10_000);
const afterRound: Array<{ rss: number; fds: number }> = [];
for (round = 0; round < ROUNDS; round++) {
  const deadline = Date.now() + SECONDS * 1000;
  // The persistent subscriber goes away (abruptly or cleanly) and comes back, a few times.
  const hopping = (async () => {
    for (let i = 0; i < 100 && Date.now() < deadline - 5000; i++) {
      await sleep(5000 + Math.random() * 3000);
      const c = subClient;
      subClient = null;
      const abrupt = Math.random() < 0.5;
      hops.push(`${abrupt ? 'reset' : 'disconnect'}@${Date.now() - started}`);
      if (abrupt) c?.socket.destroy();
      else {
        c?.send({ cmd: 'disconnect' });
        c?.socket.end();
      }
      await sleep(500 + Math.random() * 2000);
      await subscriberOnline();
      hops.push(`online@${Date.now() - started}`);
    }
  })();
  await Promise.all([
    ...Array.from({ length: PUBLISHERS }, (_, n) => publisher(n, deadline)),
    ...Array.from({ length: CLIENTS }, (_, n) => slot(n, deadline)),
    hopping,
  ]);
  // Settle: the broker closes what is left; fds come back (memory: see below).
  let settled = { rss: rss(), fds: fds() };
  for (let i = 0; i < 60 && settled.fds > baseline.fds + 20; i++) {
    await sleep(500);
    settled = { rss: rss(), fds: fds() };
  }
  await sleep(3000);
  settled = { rss: rss(), fds: fds() };
  afterRound.push(settled);
  console.log(`  round ${round + 1} done: RSS ${settled.rss.toFixed(0)} MiB, fds ${settled.fds}`);
}
clearInterval(progress);

// Every acknowledged QoS 1 message must reach the persistent subscriber (bounded wait).
for (let i = 0; i < 300 && [...acked].some((k) => !received.has(k)); i++) await sleep(100);
const lost = [...acked].filter((k) => !received.has(k));
subClient?.send({ cmd: 'disconnect' });
subClient?.socket.end();
clearInterval(sampler);
const settled = afterRound.at(-1)!;
const text = await scrape(broker.metricsPort);
const connections = metricValue(text, 'starling_connections');
await broker.stop();

console.log(`soak: ${Math.round((Date.now() - started) / 1000)} s; ${stats.connects} connects (${stats.refused} refused), peak ${stats.peakOpen} open, ${stats.misbehaved} misbehaving, ${stats.qos0} QoS 0 sent, ${stats.qos1Sent} QoS 1 sent / ${stats.qos1Acked} acked`);
console.log(`broker: RSS baseline ${baseline.rss.toFixed(0)} MiB, peak ${peakRss.toFixed(0)}, after each round ${afterRound.map((r) => r.rss.toFixed(0)).join(' / ')}; fds baseline ${baseline.fds}, peak ${peakFds}, after each round ${afterRound.map((r) => r.fds).join(' / ')}; connections gauge after ${connections}`);
console.log(`persistent subscriber: ${subscriberRetries} connect retries; ${acked.size} acknowledged QoS 1 messages, ${received.size} received, ${lost.length} lost${lost.length ? ` (e.g. ${lost.slice(0, 5).join(', ')})` : ''}`);
if (lost.length > 0) {
  const times = lost.map((k) => sentAt.get(k) ?? -1).sort((a, b) => a - b);
  console.log(`lost sent at (ms since start): ${[...new Set(times)].slice(0, 40).join(', ')}`);
  console.log(`lost by publisher: ${JSON.stringify(Object.fromEntries([...new Set(lost.map((k) => k.split('-')[0]!))].map((p) => [p, lost.filter((k) => k.startsWith(`${p}-`)).length])))}`);
  console.log(`subscriber hops: ${hops.join(' ')}`);
}
const failures: string[] = [];
if (lost.length > 0) failures.push(`${lost.length} acknowledged QoS 1 messages lost`);
if (settled.fds > baseline.fds + 20) failures.push(`fds did not come back: ${settled.fds} vs ${baseline.fds}`);
// Freed memory is not all handed back to the OS (V8 heaps, allocator arenas): RSS after a round stays above
// the baseline. A leak shows as growth from round to round; a bound catches runaway growth in one round.
if (settled.rss > baseline.rss + 600) failures.push(`RSS far above baseline: ${settled.rss.toFixed(0)} vs ${baseline.rss.toFixed(0)} MiB`);
if (afterRound.length > 1 && afterRound.at(-1)!.rss > afterRound[0]!.rss * 1.25 + 50) failures.push(`RSS grew from round to round: ${afterRound.map((r) => r.rss.toFixed(0)).join(' / ')} MiB`);
if (connections > 0) failures.push(`${connections} connections still open`);
if (failures.length > 0) {
  console.log(`FAILED: ${failures.join('; ')}`);
  process.exit(1);
}
console.log('soak: ok');
process.exit(0);
