// Load worker thread: owns a share of the connections of a run and reports counts through shared
// memory. It stops by itself if the main thread goes silent (hard deadline), so a crashed
// orchestrator never leaves a load loop running.

import type net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { newHistogram, encodeHistogram } from '../latency.ts';
import { mapLimit, openClient } from './handshake.ts';
import { disconnectPacket, PINGREQ_PACKET, publishTemplate } from './packets.ts';
import type { ConnectPlan, FromWorker, MessagingPlan, ToWorker, WorkerData } from './protocol.ts';
import { Publisher } from './publisher.ts';
import { Subscriber, type LatencyRecorder } from './subscriber.ts';
import { newTotals, publishTotals } from './totals.ts';
import { ErrorLog } from './error-log.ts';

const data = workerData as WorkerData;
const port = parentPort!;
const shared = new Float64Array(data.shared);
const epoch = BigInt(data.epoch);
const totals = newTotals();
const errors = new ErrorLog();
const sockets = new Set<net.Socket>();
const publishers: Publisher[] = [];
let recorder: LatencyRecorder | null = null;
let stopping = false;
let plan: MessagingPlan | ConnectPlan | null = null;

// Counters are copied to shared memory every few ms; the main thread reads them at will.
const flushTimer = setInterval(flush, 5);

function flush(): void {
  const u = process.threadCpuUsage();
  totals.cpuUs = u.user + u.system;
  publishTotals(totals, shared, data.slot);
}
// Absolute upper bound on a worker's life: no benchmark run here takes an hour.
const deadline = setTimeout(() => {
  errors.add('worker hit its hard deadline');
  void shutdown();
}, 3600_000);
let pingTimer: NodeJS.Timeout | null = null;

function send(msg: FromWorker): void {
  // Counters first, so whatever the main thread reads after this message is at least as new.
  flush();
  port.postMessage(msg);
}

function track(socket: net.Socket): void {
  sockets.add(socket);
  // Resets while we tear down are expected (brokers differ in how they close); only count live ones.
  socket.on('error', (err) => {
    if (!stopping) errors.add(err.message);
  });
  socket.on('close', () => {
    sockets.delete(socket);
    if (!stopping) {
      totals.disconnects++;
      errors.add('connection closed by broker');
    }
  });
}

function startPings(keepalive: number): void {
  if (keepalive <= 0) return;
  pingTimer = setInterval(() => {
    for (const s of sockets) if (!s.destroyed) s.write(PINGREQ_PACKET);
  }, (keepalive * 1000) / 2);
}

async function setupMessaging(p: MessagingPlan): Promise<void> {
  const timeoutMs = 30_000;
  // Subscribers first, so that no publisher can be connected while a subscription is missing.
  const subErrors = await mapLimit(p.subs, p.concurrency, async (s) => {
    const { socket } = await openClient({
      endpoint: s.endpoint,
      clientId: s.clientId,
      protocol: p.protocol,
      keepalive: p.keepalive,
      timeoutMs,
      subscribe: { filter: s.filter, qos: p.qos },
    });
    track(socket);
    totals.connected++;
    new Subscriber({ socket, protocol: p.protocol, totals, latency: () => recorder, onError: (m) => errors.add(m) });
  });
  const pubErrors = await mapLimit(p.pubs, p.concurrency, async (s) => {
    const { socket } = await openClient({
      endpoint: s.endpoint,
      clientId: s.clientId,
      protocol: p.protocol,
      keepalive: p.keepalive,
      timeoutMs,
    });
    track(socket);
    totals.connected++;
    const template = publishTemplate(s.topic, p.size, p.qos, p.protocol);
    publishers.push(
      new Publisher({
        socket,
        qos: p.qos,
        protocol: p.protocol,
        template,
        inflight: p.inflight,
        quota: s.quota,
        rate: s.rate,
        epoch,
        totals,
        onError: (m) => errors.add(m),
      }),
    );
  });
  for (const e of [...subErrors, ...pubErrors]) {
    totals.failed++;
    errors.add(e.message);
  }
  startPings(p.keepalive);
}

async function runConnect(p: ConnectPlan): Promise<void> {
  const hist = newHistogram();
  const ids = Array.from({ length: p.count }, (_, i) => i);
  const t0 = process.hrtime.bigint();
  let lastNs = 0;
  const failures = await mapLimit(ids, p.concurrency, async (i) => {
    if (stopping) return;
    if (p.rate > 0) {
      // Paced: connection i starts no earlier than i/rate seconds after the storm began.
      const waitMs = (i / p.rate) * 1000 - Number(process.hrtime.bigint() - t0) / 1e6;
      if (waitMs > 1) await new Promise((r) => setTimeout(r, waitMs));
    }
    const { socket, connackNs } = await openClient({
      endpoint: p.endpoint,
      clientId: `${p.idPrefix}${i}`,
      protocol: p.protocol,
      keepalive: p.keepalive,
      timeoutMs: 30_000,
      subscribe: p.subscribe ? { filter: `${p.subscribe.filterPrefix}${i}`, qos: p.subscribe.qos } : undefined,
    });
    hist.recordValue(Math.max(1, Math.round(connackNs / 1000)));
    totals.connected++;
    lastNs = Number(process.hrtime.bigint() - epoch);
    if (p.keep && !stopping) {
      track(socket);
      // Consume (and drop) PINGRESPs so the socket notices a close by the broker.
      socket.on('data', () => {});
      socket.resume();
    } else {
      socket.end(disconnectPacket());
      socket.resume();
      setTimeout(() => socket.destroy(), 2000).unref();
    }
  });
  for (const e of failures) {
    totals.failed++;
    errors.add(e.message);
  }
  if (p.keep) startPings(p.keepalive);
  send({
    type: 'connect-done',
    histogram: encodeHistogram(hist),
    firstNs: Number(t0 - epoch),
    lastNs,
    errors: errors.list(),
  });
}

async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  for (const p of publishers) p.stop();
  if (pingTimer) clearInterval(pingTimer);
  const bye = disconnectPacket();
  for (const s of sockets) s.end(bye);
  // Give DISCONNECTs a moment to leave, then drop whatever is left.
  await new Promise((r) => setTimeout(r, 200));
  for (const s of sockets) s.destroy();
  clearInterval(flushTimer);
  clearTimeout(deadline);
  send({ type: 'result', histogram: recorder ? encodeHistogram(recorder.histogram) : null, errors: errors.list() });
  port.close();
}

port.on('message', (msg: ToWorker) => {
  const run = async (): Promise<void> => {
    if (msg.type === 'setup') {
      plan = msg.plan;
      if (plan.kind === 'messaging') await setupMessaging(plan);
      send({ type: 'ready', errors: errors.list() });
    } else if (msg.type === 'go') {
      if (plan?.kind === 'messaging') {
        if (plan.stamp) {
          recorder = { histogram: newHistogram(), epoch, windowStartNs: msg.windowStartNs, windowEndNs: msg.windowEndNs };
        }
        for (const p of publishers) p.start();
      } else if (plan?.kind === 'connect') await runConnect(plan);
    } else if (msg.type === 'halt') {
      for (const p of publishers) p.stop();
      send({ type: 'halted' });
    } else if (msg.type === 'stop') await shutdown();
  };
  run().catch((err: Error) => send({ type: 'fatal', error: err.stack ?? err.message }));
});
