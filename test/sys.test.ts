// $SYS/broker/... statistics: published by the hub every sys.intervalMs, retained (a new subscriber
// gets them at once), matching what /metrics says, readable through an explicit `$SYS/...`
// subscription and never through `#` or `+/...` [MQTT-4.7.2-1], not writable by clients.
import type { MqttClient } from 'mqtt';
import type { IPublishPacket } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBroker, startBroker, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, RawClient, uniqueId, type Received } from './helpers/clients.ts';
import { metricValue, scrape } from './helpers/metrics.ts';

const SYS = '$SYS/broker/';

/** Latest payload per $SYS topic a client has seen, and a way to await a condition on them. */
function watchSys(client: MqttClient) {
  const latest = new Map<string, string>();
  const all: Received[] = [];
  let waiters: Array<() => void> = [];
  client.on('message', (topic, payload, packet) => {
    all.push({ topic, payload, packet: packet as IPublishPacket });
    latest.set(topic, payload.toString());
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  });
  return {
    latest,
    all,
    /** Resolves once pred holds (checked on every message); rejects after timeoutMs. */
    async until(pred: (latest: Map<string, string>) => boolean, timeoutMs = 10_000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      while (!pred(latest)) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`$SYS condition not met; latest: ${JSON.stringify([...latest])}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
    },
  };
}

describe('$SYS topics (sys.intervalMs 200)', () => {
  let broker: BrokerProcess;
  const clients: MqttClient[] = [];
  async function client(opts: Parameters<typeof connectClient>[1] = {}): Promise<MqttClient> {
    const c = await connectClient(broker.port, opts);
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--sys.intervalMs', '200'] });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker.stop();
  });

  it('a new $SYS/# subscriber gets the statistics at once, retained', async () => {
    const c = await client();
    const sys = watchSys(c);
    await c.subscribeAsync('$SYS/#', { qos: 0 });
    await sys.until((l) => l.has(`${SYS}version`) && l.has(`${SYS}uptime`) && l.has(`${SYS}clients/connected`));
    const version = sys.all.find((m) => m.topic === `${SYS}version`)!;
    expect(version.packet.retain).toBe(true);
    expect(version.payload.toString()).toMatch(/^starling version \d+\.\d+\.\d+/);
    expect(sys.latest.get(`${SYS}uptime`)).toMatch(/^\d+ seconds$/);
    for (const topic of ['messages/received', 'messages/sent', 'bytes/received', 'bytes/sent', 'subscriptions/count', 'retained messages/count', 'clients/disconnected']) {
      expect(sys.latest.get(SYS + topic), topic).toMatch(/^\d+$/);
    }
  });

  it('the numbers follow what happens on the node and agree with /metrics', async () => {
    const watcher = await client();
    const sys = watchSys(watcher);
    await watcher.subscribeAsync('$SYS/broker/#', { qos: 0 });
    const topic = `sys/${uniqueId()}`;
    const sub = await client({ protocolVersion: 5 });
    // QoS 0: the subscriber sends nothing back, so once the publisher's acks are in, the node is quiet.
    await sub.subscribeAsync(topic, { qos: 0 });
    const pub = await client();
    for (let i = 0; i < 5; i++) await pub.publishAsync(topic, `m${i}`, { qos: 1 });
    await pub.publishAsync(`${topic}/kept`, 'retained', { qos: 1, retain: true });

    // Quiet now: the next publications must equal the node's metrics.
    const text = await scrape(broker.metricsPort);
    const expected = {
      'messages/received': metricValue(text, 'starling_messages_received_total'),
      'clients/connected': metricValue(text, 'starling_sessions', { state: 'connected' }),
      'subscriptions/count': metricValue(text, 'starling_subscriptions'),
      'retained messages/count': metricValue(text, 'starling_retained_messages'),
      'bytes/received': metricValue(text, 'starling_received_bytes_total'),
    };
    expect(expected['clients/connected']).toBeGreaterThanOrEqual(4);
    expect(expected['retained messages/count']).toBe(1); // $SYS's own are node-local, not counted
    await sys.until((l) => Object.entries(expected).every(([k, v]) => l.get(SYS + k) === String(v)));
    // messages/sent counts $SYS deliveries too, so it only has a lower bound here.
    expect(Number(sys.latest.get(`${SYS}messages/sent`))).toBeGreaterThanOrEqual(5);
  });

  it('# and +/... do not match $SYS topics [MQTT-4.7.2-1]; $SYS/# does', async () => {
    const all = await client();
    const got: string[] = [];
    all.on('message', (t) => got.push(t));
    await all.subscribeAsync(['#', '+/broker/#', '+/+/uptime'], { qos: 0 });
    const watcher = await client();
    const sys = watchSys(watcher);
    await watcher.subscribeAsync('$SYS/#', { qos: 0 });
    // Two publication rounds after both subscriptions exist (each round changes messages/sent, since
    // the watcher received the previous one), then a fence through `#`.
    const sent = () => sys.all.filter((m) => m.topic === `${SYS}messages/sent`).length;
    await sys.until(() => sent() >= 1);
    const start = sent();
    await sys.until(() => sent() >= start + 2);
    const fence = `fence/${uniqueId()}`;
    const fenced = new Promise<void>((resolve) => all.on('message', (t) => t === fence && resolve()));
    const pub = await client();
    await pub.publishAsync(fence, 'x', { qos: 1 });
    await fenced;
    expect(got.filter((t) => t.startsWith('$'))).toEqual([]);
  });

  it('clients cannot publish to $SYS (v5 PUBACK 0x87), and the value stays the broker’s', async () => {
    const raw = await RawClient.connect(broker.port, 5);
    await raw.handshake({ clientId: uniqueId('sysw') });
    raw.send({ cmd: 'publish', topic: `${SYS}version`, payload: Buffer.from('evil 6.6.6'), qos: 1, messageId: 9, retain: true, dup: false });
    const ack = await raw.next('puback');
    expect((ack as { reasonCode?: number }).reasonCode).toBe(0x87);
    raw.destroy();
    const c = await client();
    const sys = watchSys(c);
    await c.subscribeAsync(`${SYS}version`, { qos: 0 });
    await sys.until((l) => l.has(`${SYS}version`));
    expect(sys.latest.get(`${SYS}version`)).toMatch(/^starling version/);
  });
});

describe('$SYS configuration', () => {
  it('sys.intervalMs is validated: negative or below 100 ms (but not 0) stops start-up naming the field', async () => {
    for (const bad of ['50', '-1']) {
      const b = launchBroker({ args: ['--sys.intervalMs', bad] });
      expect(await b.exited).toBe(2);
      expect(b.stderr.join('\n')).toContain('sys.intervalMs');
    }
  });

  it('still published with metrics.enabled=false; nothing with sys.intervalMs 0', async () => {
    const on = await startBroker({ workers: 2, args: ['--metrics.enabled', 'false', '--sys.intervalMs', '100'] });
    const off = await startBroker({ workers: 2, args: ['--sys.intervalMs', '0'] });
    try {
      const a = await connectClient(on.port);
      const sysOn = watchSys(a);
      await a.subscribeAsync('$SYS/#', { qos: 0 });
      await sysOn.until((l) => l.get(`${SYS}clients/connected`) === '1');

      const b = await connectClient(off.port);
      const got: string[] = [];
      b.on('message', (t) => got.push(t));
      await b.subscribeAsync('$SYS/#', { qos: 0 });
      // Nothing to await for an absence: several would-be intervals of 100 ms pass in silence.
      await new Promise((r) => setTimeout(r, 500));
      expect(got).toEqual([]);
      await Promise.all([a.endAsync(true), b.endAsync(true)]);
    } finally {
      await Promise.all([on.stop(), off.stop()]);
    }
  });
});
