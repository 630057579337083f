// Issue 3, connection lifecycle: a worker thread crashes (debug.crashOnTopic: an uncaught exception
// outside any handler). Its connections end (worker_crash, counted by the main thread), their wills are
// published, the replacement worker and the other one keep serving, starling_worker_restarts_total is 1.
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { collect, connectClient, uniqueId } from './helpers/clients.ts';
import { metricValue } from './helpers/metrics.ts';
import { clientClosed, endAll, fullScrape, LEVEL, nextEvent, subscriber, workerOf } from './helpers/lifecycle.ts';

const CRASH_TOPIC = 'debug/crash-now';

describe('worker crash (debug.crashOnTopic)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--timeouts.connectMs', '1000', '--debug.crashOnTopic', CRASH_TOPIC] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('ends the crashed worker’s connections (worker_crash), publishes their wills [MQTT-3.1.2-8], keeps serving, counts one restart', async () => {
    const base = `crash/${uniqueId()}`;
    const sub = await subscriber(broker.port, `${base}/#`);
    const subWorker = await workerOf(broker, sub.client.options.clientId!);

    // Clients with wills, v3.1.1 and v5, spread over both workers (the pool picks the least loaded).
    const clients: Array<{ client: MqttClient; id: string; worker: number }> = [];
    for (let i = 0; i < 6; i++) {
      const id = uniqueId(`crash${i}`);
      const client = await connectClient(broker.port, {
        clientId: id,
        protocolVersion: i % 2 === 0 ? 4 : 5,
        will: { topic: `${base}/will/${id}`, payload: Buffer.from(id), qos: 1, retain: false },
      });
      client.on('error', () => undefined);
      clients.push({ client, id, worker: await workerOf(broker, id) });
    }
    const victims = clients.filter((c) => c.worker !== subWorker);
    const survivors = clients.filter((c) => c.worker === subWorker);
    expect(victims.length).toBeGreaterThan(0);
    expect(survivors.length).toBeGreaterThan(0);

    const before = await fullScrape(broker);
    expect(metricValue(before, 'starling_worker_restarts_total')).toBe(0);
    const crashWillsBefore = metricValue(before, 'starling_wills_published_total', { cause: 'worker_crash' });

    // A victim publishes to the crash topic: its worker throws outside the handler and dies.
    const closed = victims.map((v) => clientClosed(v.client));
    victims[0]!.client.publish(CRASH_TOPIC, 'boom', { qos: 0 });
    await broker.waitForLog((l) => l.msg === 'worker exited; starting a replacement', 15_000);
    await Promise.all(closed);

    // Every victim's will, and no survivor's.
    const wills = await sub.got.next(victims.length, 15_000);
    expect(wills.map((w) => w.payload.toString()).sort()).toEqual(victims.map((v) => v.id).sort());
    for (const s of survivors) expect(s.client.connected).toBe(true);

    // The crash is an error an operator must see; the uncaught exception is in it.
    const crashLine = broker.logs.find((l) => l.msg === 'worker crashed');
    expect(crashLine?.level).toBe(LEVEL.error);
    expect(JSON.stringify(crashLine)).toContain('debug.crashOnTopic');

    // Counted by the main thread, once per connection of the crashed worker.
    const after = await fullScrape(broker);
    expect(metricValue(after, 'starling_worker_restarts_total')).toBe(1);
    expect(metricValue(after, 'starling_disconnects_total', { reason: 'worker_crash', initiator: 'server' })).toBe(victims.length);
    expect(metricValue(after, 'starling_wills_published_total', { cause: 'worker_crash' })).toBe(crashWillsBefore + victims.length);

    // Still serving: new connections (the first lands on the replacement worker, the least loaded)
    // publish to and receive from survivors.
    const fresh: MqttClient[] = [];
    for (let i = 0; i < 2; i++) fresh.push(await connectClient(broker.port, { protocolVersion: 5 }));
    const freshWorkers = await Promise.all(fresh.map((c) => workerOf(broker, c.options.clientId!)));
    expect(freshWorkers.some((w) => w !== subWorker)).toBe(true); // the replacement serves connections
    for (const f of fresh) await f.publishAsync(`${base}/after`, `from ${f.options.clientId}`, { qos: 1 });
    const afterMsgs = await sub.got.next(fresh.length, 10_000);
    expect(afterMsgs.map((m) => m.payload.toString()).sort()).toEqual(fresh.map((f) => `from ${f.options.clientId}`).sort());
    const freshGot = collect(fresh[0]!);
    await fresh[0]!.subscribeAsync(`${base}/to-fresh`, { qos: 1 });
    await survivors[0]!.client.publishAsync(`${base}/to-fresh`, 'hello new worker', { qos: 1 });
    expect((await freshGot.next(1, 10_000))[0]!.payload.toString()).toBe('hello new worker');

    await endAll([sub.client, ...survivors.map((s) => s.client), ...fresh, ...victims.map((v) => v.client)]);
  });

  it('keeps a persistent session of the crashed worker: its subscription still queues, the client resumes it', async () => {
    const topic = `crash/${uniqueId()}/persistent`;
    const persistentId = uniqueId('persist');
    const opts = { clientId: persistentId, protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 300 } };
    const persistent = await connectClient(broker.port, opts);
    persistent.on('error', () => undefined);
    await persistent.subscribeAsync(topic, { qos: 1 });
    const target = await workerOf(broker, persistentId);
    // A crasher on the same worker (bounded: the pool alternates between the two workers).
    let crasher: MqttClient | null = null;
    const others: MqttClient[] = [];
    for (let i = 0; i < 6 && !crasher; i++) {
      const c = await connectClient(broker.port, { protocolVersion: 5 });
      c.on('error', () => undefined);
      if ((await workerOf(broker, c.options.clientId!)) === target) crasher = c;
      else others.push(c);
    }
    expect(crasher).not.toBeNull();
    const publisher = others[0] ?? (await connectClient(broker.port, { protocolVersion: 5 }));
    const gone = clientClosed(persistent);
    crasher!.publish(CRASH_TOPIC, 'boom', { qos: 0 });
    await gone;
    const recovered = await broker.waitForLog((l) => l.msg === 'recovered from worker crash' && l.worker === target, 15_000);
    expect(recovered.sessions).toBeGreaterThanOrEqual(1);

    // Offline now; the session was re-homed with its subscription: a QoS 1 message is queued for it.
    await publisher.publishAsync(topic, 'while-offline', { qos: 1 });
    // Collecting from the start: the queued message follows CONNACK at once.
    const resumed = mqtt.connect(`mqtt://127.0.0.1:${broker.port}`, { ...opts, reconnectPeriod: 0 });
    const got = collect(resumed);
    const [connack] = await nextEvent<[{ sessionPresent: boolean }]>(resumed, 'connect');
    expect(connack.sessionPresent).toBe(true);
    const [msg] = await got.next(1, 10_000);
    expect(msg!.payload.toString()).toBe('while-offline');
    await resumed.endAsync();
    await endAll([publisher, crasher!, ...others, persistent]);
  });
});
