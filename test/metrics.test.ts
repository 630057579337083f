// /metrics after real scenarios, on a node with 2 workers and the clients of each scenario spread over
// both: every counter moves by exactly the expected amount with the expected labels, per-worker gauges
// stay apart, counters from different workers are summed into one series, and bytes match what the
// clients' sockets actually wrote and read.
import type { IConnackPacket, IPublishPacket } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { RawClient, uniqueId } from './helpers/clients.ts';
import { metricValue, scrape } from './helpers/metrics.ts';
import { connectedWorker, steerNext } from './helpers/placement.ts';

type Version = 4 | 5;
type Fields = Parameters<RawClient['handshake']>[0];

/** Difference of one series (labels: a subset that must match) between two scrapes. */
function delta(before: string, after: string, name: string, labels: Record<string, string> = {}): number {
  return metricValue(after, name, labels) - metricValue(before, name, labels);
}

/** The value lines of one metric (not its HELP/TYPE). */
function series(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

function publish(topic: string, payload: string | Buffer, qos: 0 | 1 | 2, extra: Partial<IPublishPacket> = {}): IPublishPacket {
  return { cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, ...(qos > 0 ? { messageId: 1 } : {}), ...extra } as IPublishPacket;
}

async function ping(c: RawClient): Promise<void> {
  c.send({ cmd: 'pingreq' });
  await c.next('pingresp');
}

async function subscribe(c: RawClient, topic: string, qos: 0 | 1 | 2, messageId = 1): Promise<void> {
  c.send({ cmd: 'subscribe', messageId, subscriptions: [{ topic, qos }] });
  await c.next('suback', 5000, (p) => p.messageId === messageId);
}

async function disconnect(c: RawClient): Promise<void> {
  c.send(c.version === 5 ? { cmd: 'disconnect', reasonCode: 0 } : { cmd: 'disconnect' });
  expect(await c.closedWithin(5000)).toBe(true);
}

/** Repeats `read` (bounded: 100 tries, 50 ms apart) until it returns a value. */
async function until<T>(read: () => Promise<T | null>): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const v = await read();
    if (v !== null) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('condition not reached within 5 s');
}

/** Bytes this client's socket wrote to and read from the broker so far. */
function io(clients: RawClient[]): { written: number; read: number } {
  let written = 0;
  let read = 0;
  for (const c of clients) {
    written += c.socket.bytesWritten;
    read += c.socket.bytesRead;
  }
  return { written, read };
}

describe('/metrics on a node with 2 workers', () => {
  let broker: BrokerProcess;
  const open: RawClient[] = [];

  /** Connects (CONNACK 0 asserted) and tells which worker the connection landed on. */
  async function connect(version: Version, fields: Fields = {}): Promise<{ c: RawClient; worker: number; clientId: string }> {
    const clientId = fields.clientId ?? uniqueId('m');
    const c = await RawClient.connect(broker.port, version);
    open.push(c);
    const ack: IConnackPacket = await c.handshake({ ...fields, clientId });
    expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(0);
    return { c, worker: await connectedWorker(broker, clientId), clientId };
  }

  /** Two connected clients on different workers; placement is settled before the caller's first scrape. */
  async function pair(a: { version: Version; fields?: Fields }, b: { version: Version; fields?: Fields }) {
    const first = await connect(a.version, a.fields);
    open.push(...(await steerNext(broker, (w) => w !== first.worker)));
    const second = await connect(b.version, b.fields);
    expect(second.worker).not.toBe(first.worker);
    return [first, second] as const;
  }

  /**
   * A scrape once `name` moved by at least `atLeast` since `before` (for effects on a worker that no
   * client observes); the caller then asserts exact values on it. Counters never go down, so an
   * overshoot still fails the exact assertions.
   */
  function settled(before: string, name: string, atLeast: number): Promise<string> {
    return until(async () => {
      const text = await scrape(broker.metricsPort);
      return delta(before, text, name) >= atLeast ? text : null;
    });
  }

  /** The broker logged the end of this client's connection (its metrics moved in the same turn). */
  function ended(clientId: string) {
    return broker.waitForLog((l) => l.msg === 'connection closed' && l.clientId === clientId);
  }

  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--limits.maxQueued', '2', '--debug.crashOnTopic', 'test/crash-worker'] });
  });
  afterAll(async () => {
    for (const c of open) c.destroy();
    await broker.stop();
  });

  it('connect on both workers, clean DISCONNECT and a dropped socket', async () => {
    const before = await scrape(broker.metricsPort);
    const a = await connect(4);
    const b = await connect(5);
    expect(a.worker).not.toBe(b.worker);
    const mid = await scrape(broker.metricsPort);
    expect(delta(before, mid, 'starling_connection_attempts_total', { result: 'accepted' })).toBe(2);
    for (const result of ['identifier_rejected', 'unsupported_protocol', 'bad_credentials']) expect(delta(before, mid, 'starling_connection_attempts_total', { result })).toBe(0);
    expect(delta(before, mid, 'starling_connections', { worker: String(a.worker) })).toBe(1);
    expect(delta(before, mid, 'starling_connections', { worker: String(b.worker) })).toBe(1);
    expect(delta(before, mid, 'starling_sessions', { state: 'connected' })).toBe(2);
    const wire = io([a.c, b.c]);
    expect(delta(before, mid, 'starling_received_bytes_total')).toBe(wire.written);
    expect(delta(before, mid, 'starling_sent_bytes_total')).toBe(wire.read);

    const bEnded = ended(b.clientId);
    await disconnect(a.c);
    b.c.destroy();
    await bEnded;
    const after = await scrape(broker.metricsPort);
    expect(delta(before, after, 'starling_disconnects_total', { reason: 'normal', initiator: 'client' })).toBe(1);
    expect(delta(before, after, 'starling_disconnects_total', { reason: 'socket_closed', initiator: 'network' })).toBe(1);
    expect(delta(before, after, 'starling_disconnects_total')).toBe(2);
    expect(delta(before, after, 'starling_connections')).toBe(0);
    expect(delta(before, after, 'starling_sessions', { state: 'connected' })).toBe(0);
    // The only byte after the CONNECTs: a's DISCONNECT (2 bytes).
    expect(delta(mid, after, 'starling_received_bytes_total')).toBe(2);
    expect(delta(mid, after, 'starling_sent_bytes_total')).toBe(0);
  });

  it('publish at QoS 0, 1 and 2 from one worker to a subscriber on the other', async () => {
    const topic = `m/${uniqueId()}`;
    const [sub, pub] = await pair({ version: 4 }, { version: 5 });
    await subscribe(sub.c, `${topic}/#`, 2);
    const wireBefore = io([sub.c, pub.c]);
    const before = await scrape(broker.metricsPort);

    pub.c.send(publish(`${topic}/0`, 'zero', 0));
    pub.c.send(publish(`${topic}/1`, 'one', 1, { messageId: 11 }));
    await pub.c.next('puback');
    pub.c.send(publish(`${topic}/2`, 'two', 2, { messageId: 12 }));
    await pub.c.next('pubrec');
    pub.c.send({ cmd: 'pubrel', messageId: 12 });
    await pub.c.next('pubcomp');

    const got: IPublishPacket[] = [];
    for (let i = 0; i < 3; i++) got.push(await sub.c.next<IPublishPacket>('publish'));
    expect(got.map((p) => p.qos).sort()).toEqual([0, 1, 2]);
    for (const p of got) {
      if (p.qos === 1) sub.c.send({ cmd: 'puback', messageId: p.messageId });
      if (p.qos === 2) {
        sub.c.send({ cmd: 'pubrec', messageId: p.messageId });
        await sub.c.next('pubrel');
        sub.c.send({ cmd: 'pubcomp', messageId: p.messageId });
      }
    }
    // A PINGRESP on each connection: everything sent before it was read and counted.
    await ping(sub.c);
    await ping(pub.c);
    const after = await scrape(broker.metricsPort);

    for (const qos of ['0', '1', '2']) {
      expect(delta(before, after, 'starling_messages_received_total', { qos })).toBe(1);
      expect(delta(before, after, 'starling_messages_sent_total', { qos })).toBe(1);
    }
    expect(delta(before, after, 'starling_messages_dropped_total')).toBe(0);
    expect(delta(before, after, 'starling_publish_deliver_latency_seconds_count')).toBe(3);
    expect(delta(before, after, 'starling_publish_deliver_latency_seconds_bucket', { le: '+Inf' })).toBe(3);
    expect(delta(before, after, 'starling_publish_deliver_latency_seconds_sum')).toBeGreaterThan(0);
    expect(metricValue(after, 'starling_inflight_messages')).toBe(0);
    const wire = io([sub.c, pub.c]);
    expect(delta(before, after, 'starling_received_bytes_total')).toBe(wire.written - wireBefore.written);
    expect(delta(before, after, 'starling_sent_bytes_total')).toBe(wire.read - wireBefore.read);
    expect(delta(before, after, 'starling_connection_attempts_total')).toBe(0);
    expect(delta(before, after, 'starling_disconnects_total')).toBe(0);
  });

  it('the latency histogram sums both workers: one series, buckets and count from each', async () => {
    const topic = `h/${uniqueId()}`;
    const [a, b] = await pair({ version: 4 }, { version: 4 });
    await subscribe(a.c, topic, 0);
    await subscribe(b.c, topic, 0);
    const before = await scrape(broker.metricsPort);
    for (let i = 0; i < 5; i++) a.c.send(publish(topic, `h${i}`, 0)); // a gets its own too (v3.1.1)
    for (let i = 0; i < 5; i++) {
      await a.c.next('publish');
      await b.c.next('publish');
    }
    const after = await scrape(broker.metricsPort);
    // Each message was written on both workers: 5 observations on each, summed.
    expect(delta(before, after, 'starling_publish_deliver_latency_seconds_count')).toBe(10);
    expect(delta(before, after, 'starling_publish_deliver_latency_seconds_bucket', { le: '+Inf' })).toBe(10);
    expect(delta(before, after, 'starling_messages_received_total', { qos: '0' })).toBe(5);
    expect(delta(before, after, 'starling_messages_sent_total', { qos: '0' })).toBe(10);
    const buckets = series(after, 'starling_publish_deliver_latency_seconds_bucket');
    expect(buckets).toHaveLength(13);
    const counts = buckets.map((l) => Number(l.split(' ')[1]));
    for (let i = 1; i < counts.length; i++) expect(counts[i]).toBeGreaterThanOrEqual(counts[i - 1]!);
  });

  it('an outbound QoS 1 message counts as in flight until its PUBACK', async () => {
    const topic = `m/${uniqueId()}`;
    const [sub, pub] = await pair({ version: 4 }, { version: 4 });
    await subscribe(sub.c, topic, 1);
    const before = await scrape(broker.metricsPort);
    pub.c.send(publish(topic, 'x', 1, { messageId: 3 }));
    await pub.c.next('puback');
    const p = await sub.c.next<IPublishPacket>('publish');
    const held = await scrape(broker.metricsPort);
    expect(delta(before, held, 'starling_inflight_messages')).toBe(1);
    sub.c.send({ cmd: 'puback', messageId: p.messageId });
    await ping(sub.c);
    const after = await scrape(broker.metricsPort);
    expect(delta(before, after, 'starling_inflight_messages')).toBe(0);
  });

  it('subscriptions follow SUBSCRIBE, UNSUBSCRIBE and the end of a clean session', async () => {
    const [a, b] = await pair({ version: 4 }, { version: 5 });
    const filters = [`s/${uniqueId()}/+`, `s/${uniqueId()}/#`, `s/${uniqueId()}`];
    const before = await scrape(broker.metricsPort);
    await subscribe(a.c, filters[0]!, 0);
    await subscribe(a.c, filters[1]!, 1, 2);
    await subscribe(a.c, filters[1]!, 2, 3); // the same filter again replaces, it does not add
    await subscribe(b.c, filters[2]!, 2);
    expect(delta(before, await scrape(broker.metricsPort), 'starling_subscriptions')).toBe(3);
    a.c.send({ cmd: 'unsubscribe', messageId: 4, unsubscriptions: [filters[0]!, 'nothing/here'] });
    await a.c.next('unsuback');
    expect(delta(before, await scrape(broker.metricsPort), 'starling_subscriptions')).toBe(2);
    await disconnect(a.c);
    await disconnect(b.c);
    const after = await scrape(broker.metricsPort);
    expect(delta(before, after, 'starling_subscriptions')).toBe(0);
    expect(delta(before, after, 'starling_disconnects_total', { reason: 'normal' })).toBe(2);
  });

  it('a session taken over from the other worker', async () => {
    const clientId = uniqueId('takeover');
    const first = await connect(5, { clientId, properties: { sessionExpiryInterval: 60 } });
    open.push(...(await steerNext(broker, (w) => w !== first.worker)));
    const before = await scrape(broker.metricsPort);
    const firstEnded = ended(clientId);
    const second = await RawClient.connect(broker.port, 5);
    open.push(second);
    const ack = await second.handshake({ clientId, clean: false, properties: { sessionExpiryInterval: 60 } });
    expect(ack.reasonCode).toBe(0);
    expect(ack.sessionPresent).toBe(true);
    const dis = await first.c.next('disconnect');
    expect((dis as { reasonCode?: number }).reasonCode).toBe(0x8e);
    await firstEnded;
    const firstLine = broker.logs.find((l) => l.msg === 'connected' && l.clientId === clientId)!;
    const secondWorker = await connectedWorker(broker, clientId, new Set([firstLine]));
    expect(secondWorker).not.toBe(first.worker);
    const after = await scrape(broker.metricsPort);
    expect(delta(before, after, 'starling_session_takeovers_total')).toBe(1);
    expect(delta(before, after, 'starling_disconnects_total', { reason: 'session_taken_over', initiator: 'server' })).toBe(1);
    expect(delta(before, after, 'starling_disconnects_total')).toBe(1);
    expect(delta(before, after, 'starling_connection_attempts_total', { result: 'accepted' })).toBe(1);
    expect(delta(before, after, 'starling_connections', { worker: String(first.worker) })).toBe(-1);
    expect(delta(before, after, 'starling_connections', { worker: String(secondWorker) })).toBe(1);
    expect(delta(before, after, 'starling_sessions', { state: 'connected' })).toBe(0);
    expect(delta(before, after, 'starling_sessions', { state: 'offline' })).toBe(0);
    await disconnect(second);
  });

  it('retained messages: stored, sent to a new subscriber, cleared', async () => {
    const topic = `r/${uniqueId()}`;
    const [pub, sub] = await pair({ version: 4 }, { version: 4 });
    const before = await scrape(broker.metricsPort);
    pub.c.send(publish(topic, 'kept', 1, { retain: true, messageId: 5 }));
    await pub.c.next('puback');
    const stored = await scrape(broker.metricsPort);
    expect(delta(before, stored, 'starling_retained_messages')).toBe(1);
    expect(delta(before, stored, 'starling_messages_received_total', { qos: '1' })).toBe(1);
    // A retained message with no subscriber yet is kept, not dropped.
    expect(delta(before, stored, 'starling_messages_dropped_total')).toBe(0);

    await subscribe(sub.c, topic, 1);
    const p = await sub.c.next<IPublishPacket>('publish');
    expect(p.retain).toBe(true);
    sub.c.send({ cmd: 'puback', messageId: p.messageId });
    await ping(sub.c);
    const sent = await scrape(broker.metricsPort);
    expect(delta(stored, sent, 'starling_messages_sent_total', { qos: '1' })).toBe(1);

    pub.c.send(publish(topic, '', 0, { retain: true }));
    await sub.c.next('publish'); // the (empty) clearing message reaches the subscriber too
    await ping(pub.c);
    const cleared = await scrape(broker.metricsPort);
    expect(delta(before, cleared, 'starling_retained_messages')).toBe(0);
    expect(delta(sent, cleared, 'starling_messages_received_total', { qos: '0' })).toBe(1);
    expect(delta(sent, cleared, 'starling_messages_sent_total', { qos: '0' })).toBe(1);
  });

  it('drops by cause: no route, too large for the client, queue full, expired', async () => {
    const base = `d/${uniqueId()}`;
    const [sub, pub] = await pair({ version: 5, fields: { properties: { maximumPacketSize: 64 } } }, { version: 5 });
    await subscribe(sub.c, `${base}/big`, 0);

    let before = await scrape(broker.metricsPort);
    pub.c.send(publish(`${base}/nobody`, 'x', 0));
    pub.c.send(publish(`${base}/big`, Buffer.alloc(200, 1), 0));
    await ping(pub.c);
    // The drop for the subscriber happens on its worker, after a hop no client can see: await it.
    let after = await settled(before, 'starling_messages_dropped_total', 2);
    expect(delta(before, after, 'starling_messages_dropped_total', { cause: 'no_route' })).toBe(1);
    expect(delta(before, after, 'starling_messages_dropped_total', { cause: 'too_large' })).toBe(1);
    expect(delta(before, after, 'starling_messages_dropped_total')).toBe(2);
    expect(delta(before, after, 'starling_messages_sent_total')).toBe(0);
    expect(sub.c.received.filter((p) => p.cmd === 'publish')).toEqual([]);

    // An offline persistent session (maxQueued 2 on this broker): the third message overflows.
    const offlineId = uniqueId('offline');
    const persistent = { clientId: offlineId, clean: false, properties: { sessionExpiryInterval: 300 } };
    const off = await connect(5, persistent);
    await subscribe(off.c, `${base}/q`, 1);
    await subscribe(off.c, `${base}/q-expiring`, 1, 2);
    await disconnect(off.c);
    before = await scrape(broker.metricsPort);
    for (let i = 0; i < 3; i++) {
      pub.c.send(publish(`${base}/q`, `q${i}`, 1, { messageId: 20 + i }));
      await pub.c.next('puback');
    }
    after = await settled(before, 'starling_messages_dropped_total', 1);
    expect(delta(before, after, 'starling_messages_dropped_total', { cause: 'queue_full' })).toBe(1);
    expect(delta(before, after, 'starling_messages_dropped_total')).toBe(1);
    expect(delta(before, after, 'starling_queued_messages')).toBe(2);
    expect(metricValue(after, 'starling_sessions', { state: 'offline' })).toBeGreaterThanOrEqual(1);

    // Resumed: the queue drains into the connection.
    const back = await RawClient.connect(broker.port, 5);
    open.push(back);
    expect((await back.handshake(persistent)).sessionPresent).toBe(true);
    for (let i = 0; i < 2; i++) {
      const p = await back.next<IPublishPacket>('publish');
      back.send({ cmd: 'puback', messageId: p.messageId });
    }
    await ping(back);
    const resumed = await scrape(broker.metricsPort);
    expect(delta(after, resumed, 'starling_queued_messages')).toBe(-2);
    expect(delta(after, resumed, 'starling_messages_sent_total', { qos: '1' })).toBe(2);
    expect(delta(after, resumed, 'starling_sessions', { state: 'offline' })).toBe(-1);
    expect(delta(after, resumed, 'starling_sessions', { state: 'connected' })).toBe(1);
    await disconnect(back);

    // Expired while queued: dropped when the session resumes, never sent.
    pub.c.send(publish(`${base}/q-expiring`, 'late', 1, { messageId: 31, properties: { messageExpiryInterval: 1 } }));
    await pub.c.next('puback');
    // Message expiry is time itself: wait it out, then resume the session.
    await new Promise((r) => setTimeout(r, 1100));
    before = await scrape(broker.metricsPort);
    expect(metricValue(before, 'starling_queued_messages')).toBeGreaterThanOrEqual(1);
    const again = await RawClient.connect(broker.port, 5);
    open.push(again);
    await again.handshake({ ...persistent, properties: { sessionExpiryInterval: 0 } });
    await ping(again);
    after = await scrape(broker.metricsPort);
    expect(delta(before, after, 'starling_messages_dropped_total', { cause: 'expired' })).toBe(1);
    expect(delta(before, after, 'starling_messages_dropped_total')).toBe(1);
    expect(delta(before, after, 'starling_messages_sent_total')).toBe(0);
    expect(delta(before, after, 'starling_queued_messages')).toBe(-1);
    expect(again.received.filter((p) => p.cmd === 'publish')).toEqual([]);
    await disconnect(again);
  });

  it('a will published when the connection is lost', async () => {
    const topic = `w/${uniqueId()}`;
    const [watcher, willer] = await pair({ version: 4 }, { version: 4, fields: { will: { topic, payload: Buffer.from('gone'), qos: 0, retain: false } } });
    await subscribe(watcher.c, topic, 0);
    const before = await scrape(broker.metricsPort);
    willer.c.destroy();
    expect((await watcher.c.next<IPublishPacket>('publish')).payload.toString()).toBe('gone');
    // The hub counts the will once the worker confirmed routing it: a moment after the watcher has it.
    const after = await until(async () => {
      const text = await scrape(broker.metricsPort);
      return delta(before, text, 'starling_wills_published_total') >= 1 ? text : null;
    });
    expect(delta(before, after, 'starling_wills_published_total', { cause: 'connection_lost' })).toBe(1);
    expect(delta(before, after, 'starling_wills_published_total')).toBe(1);
    expect(delta(before, after, 'starling_disconnects_total', { reason: 'socket_closed', initiator: 'network' })).toBe(1);
    expect(delta(before, after, 'starling_messages_sent_total', { qos: '0' })).toBe(1);
  });

  it('one series per label set: counters summed across workers, per-worker gauges apart', async () => {
    const text = await scrape(broker.metricsPort);
    const names = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
    expect(new Set(names).size).toBe(names.length);
    for (const name of names) {
      const lines = series(text, name).map((l) => l.slice(0, l.lastIndexOf(' ')));
      expect(new Set(lines).size, name).toBe(lines.length);
    }
    // Counters carry no worker label: one series per reason, summed over both workers.
    expect(series(text, 'starling_messages_received_total')).toHaveLength(3);
    expect(text).not.toMatch(/^starling_\w+_total\{[^}]*worker=/m);
    // Per-worker detail where it helps.
    expect(series(text, 'starling_connections').map((l) => /worker="(\d+)"/.exec(l)?.[1]).sort()).toEqual(['1', '2']);
    expect(series(text, 'starling_event_loop_lag_seconds')).toHaveLength(2);
    for (const l of series(text, 'starling_event_loop_lag_seconds')) expect(Number(l.split(' ')[1])).toBeGreaterThanOrEqual(0);
    expect(metricValue(text, 'starling_workers')).toBe(2);
    expect(metricValue(text, 'starling_ready')).toBe(1);
    expect(metricValue(text, 'starling_build_info')).toBe(1);
    expect(metricValue(text, 'starling_process_start_time_seconds')).toBeGreaterThan(0);
    expect(metricValue(text, 'starling_process_resident_memory_bytes')).toBeGreaterThan(0);
    // Naming: counters end in _total, histogram sums/counts come with their buckets.
    for (const m of text.matchAll(/^# TYPE (\S+) counter$/gm)) expect(m[1]).toMatch(/^starling_\w+_total$/);
    for (const name of names) expect(name).toMatch(/^starling_/);
  });

  it("a worker crash neither loses nor double-counts what it had counted", async () => {
    const topic = `c/${uniqueId()}`;
    const [sub, pub] = await pair({ version: 4 }, { version: 4 });
    await subscribe(sub.c, topic, 0);
    for (let i = 0; i < 5; i++) pub.c.send(publish(topic, `m${i}`, 0));
    for (let i = 0; i < 5; i++) await sub.c.next('publish');
    await ping(pub.c);
    const before = await scrape(broker.metricsPort);
    const subEnded = ended(sub.clientId);
    // Crash the subscriber's worker (the publish is handled there); nothing is counted in between.
    sub.c.send(publish('test/crash-worker', 'boom', 0));
    await subEnded.catch(() => undefined);
    await broker.waitForLog((l) => l.msg === 'worker exited; starting a replacement');
    const after = await until(async () => {
      const text = await scrape(broker.metricsPort);
      return metricValue(text, 'starling_workers') === 2 && series(text, 'starling_connections').length === 2 ? text : null;
    });
    expect(delta(before, after, 'starling_worker_restarts_total')).toBe(1);
    for (const qos of ['0', '1', '2']) expect(delta(before, after, 'starling_messages_received_total', { qos })).toBe(0);
    expect(delta(before, after, 'starling_messages_sent_total')).toBe(0);
    expect(delta(before, after, 'starling_publish_deliver_latency_seconds_count')).toBe(0);
    expect(delta(before, after, 'starling_connection_attempts_total')).toBe(0);
    expect(delta(before, after, 'starling_received_bytes_total')).toBe(0);
    expect(series(after, 'starling_connections').some((l) => l.includes(`worker="${sub.worker}"`))).toBe(false);
  });
});
