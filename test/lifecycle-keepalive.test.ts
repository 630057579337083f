// Issue 3, connection lifecycle: keepalive (1.5 × keepalive, will on timeout, keepalive 0, maximum
// keepalive, half-open peers: a silent raw socket and a SIGSTOPped client process, TCP keepalive).
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import type mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { RawClient, uniqueId } from './helpers/clients.ts';
import { closedLine, disconnects, endAll, LEVEL, spawnWillClient, subscriber } from './helpers/lifecycle.ts';

const MAX_KEEPALIVE = 2;
const TCP_KEEPALIVE_MS = 20_000;

/** A raw client with a will, connected and then silent (its socket stays open: a half-open peer).
 *  sentAt: taken before the CONNECT left, so the broker's last-seen time is no earlier. */
async function silentWithWill(port: number, version: 4 | 5, keepalive: number, willTopic: string, payload: string) {
  const raw = await RawClient.connect(port, version);
  const clientId = uniqueId('silent');
  const sentAt = Date.now();
  const ack = await raw.handshake({ clientId, keepalive, will: { topic: willTopic, payload: Buffer.from(payload), qos: 1, retain: false } as mqttPacket.IConnectPacket['will'] });
  return { raw, clientId, ack, sentAt };
}

describe(`keepalive (keepalive.maxSeconds ${MAX_KEEPALIVE})`, () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({
      workers: 2,
      args: ['--timeouts.connectMs', '1000', '--keepalive.maxSeconds', String(MAX_KEEPALIVE), '--timeouts.tcpKeepAliveMs', String(TCP_KEEPALIVE_MS)],
    });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('closes a silent half-open v3.1.1 connection after 1.5 × keepalive, publishes its will, counts keepalive_timeout once [MQTT-3.1.2-24]', async () => {
    const topic = `will/ka/${uniqueId()}`;
    const sub = await subscriber(broker.port, topic);
    const before = await disconnects(broker, 'keepalive_timeout');
    const c = await silentWithWill(broker.port, 4, 1, topic, 'gone-v4');
    expect(c.ack.returnCode).toBe(0);
    const [will] = await sub.got.next(1, 10_000);
    expect(will!.payload.toString()).toBe('gone-v4');
    expect(will!.packet.qos).toBe(1);
    expect(await c.raw.closedWithin(5000)).toBe(true);
    // Not before 1.5 × keepalive after the last packet (small slack for clock granularity).
    expect(Date.now() - c.sentAt).toBeGreaterThanOrEqual(1450);
    const line = await closedLine(broker, { clientId: c.clientId });
    expect(line.reason).toBe('keepalive_timeout');
    expect(line.level).toBe(LEVEL.info);
    expect(await disconnects(broker, 'keepalive_timeout')).toBe(before + 1);
    await endAll([sub.client]);
  });

  it('sends a v5 client DISCONNECT 0x8D Keep Alive timeout, then closes and publishes the will [MQTT-3.1.2-22]', async () => {
    const topic = `will/ka/${uniqueId()}`;
    const sub = await subscriber(broker.port, topic);
    const c = await silentWithWill(broker.port, 5, 1, topic, 'gone-v5');
    expect(c.ack.reasonCode).toBe(0);
    const disconnect = await c.raw.next<mqttPacket.IDisconnectPacket>('disconnect', 10_000);
    expect(disconnect.reasonCode).toBe(0x8d);
    expect(await c.raw.closedWithin(5000)).toBe(true);
    const [will] = await sub.got.next(1, 10_000);
    expect(will!.payload.toString()).toBe('gone-v5');
    await endAll([sub.client]);
  });

  it('keeps a client that sends a packet within each keepalive period, while a silent one is closed', async () => {
    const pinging = await RawClient.connect(broker.port, 4);
    await pinging.handshake({ keepalive: 1 });
    // A PINGREQ well inside each keepalive period (bounded: stopped below).
    const pings = setInterval(() => pinging.send({ cmd: 'pingreq' }), 400);
    try {
      const silent = await RawClient.connect(broker.port, 4);
      await silent.handshake({ keepalive: 1 });
      expect(await silent.closedWithin(10_000)).toBe(true);
      // Connected for longer than 1.5 × keepalive by now, and still working.
      expect(pinging.socket.destroyed).toBe(false);
      const echo = `ka/echo/${uniqueId()}`;
      pinging.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: echo, qos: 0 }] } as mqttPacket.ISubscribePacket);
      await pinging.next('suback');
      pinging.send({ cmd: 'publish', topic: echo, payload: Buffer.from('still here'), qos: 0, dup: false, retain: false });
      expect((await pinging.next<mqttPacket.IPublishPacket>('publish')).payload.toString()).toBe('still here');
    } finally {
      clearInterval(pings);
    }
    pinging.send({ cmd: 'disconnect' });
    await pinging.closed;
  });

  it('keepalive 0 disables the check: the client outlives a silent client held to the maximum keepalive', async () => {
    const idle = await RawClient.connect(broker.port, 4);
    expect((await idle.handshake({ keepalive: 0 })).returnCode).toBe(0);
    const control = await RawClient.connect(broker.port, 4);
    await control.handshake({ keepalive: MAX_KEEPALIVE });
    expect(await control.closedWithin(15_000)).toBe(true); // after 1.5 × 2 s
    idle.send({ cmd: 'pingreq' });
    await idle.next('pingresp');
    expect(idle.socket.destroyed).toBe(false);
    idle.send({ cmd: 'disconnect' });
    await idle.closed;
  });

  it('gives a v5 client above the maximum Server Keep Alive in CONNACK and holds it to that [MQTT-3.2.2-21]', async () => {
    const raw = await RawClient.connect(broker.port, 5);
    const sentAt = Date.now();
    const ack = await raw.handshake({ keepalive: 60 });
    expect(ack.reasonCode).toBe(0);
    expect(ack.properties?.serverKeepAlive).toBe(MAX_KEEPALIVE);
    // Silent: closed after 1.5 × 2 s, not 1.5 × 60 s.
    const disconnect = await raw.next<mqttPacket.IDisconnectPacket>('disconnect', 15_000);
    expect(disconnect.reasonCode).toBe(0x8d);
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(1.5 * MAX_KEEPALIVE * 1000 - 50);
    expect(await raw.closedWithin(5000)).toBe(true);
  });

  it('sends no Server Keep Alive to a v5 client within the maximum: its own keepalive applies [MQTT-3.2.2-22]', async () => {
    const raw = await RawClient.connect(broker.port, 5);
    const ack = await raw.handshake({ keepalive: 1 });
    expect(ack.reasonCode).toBe(0);
    expect(ack.properties?.serverKeepAlive).toBeUndefined();
    raw.send({ cmd: 'disconnect', reasonCode: 0 } as mqttPacket.IDisconnectPacket);
    await raw.closed;
  });

  it('refuses a v3.1.1 client above the maximum with CONNACK 0x02 and closes', async () => {
    const raw = await RawClient.connect(broker.port, 4);
    const ack = await raw.handshake({ keepalive: 60 });
    expect(ack.returnCode).toBe(0x02);
    expect(await raw.closedWithin(5000)).toBe(true);
  });

  it('closes a client PROCESS stopped by SIGSTOP (half-open) and publishes its will', async () => {
    const topic = `will/ka/${uniqueId()}`;
    const sub = await subscriber(broker.port, topic);
    const clientId = uniqueId('stopped');
    const child = await spawnWillClient({ port: broker.port, clientId, keepalive: 1, willTopic: topic, willPayload: 'stopped' });
    try {
      await broker.waitForLog((l) => l.msg === 'connected' && l.clientId === clientId);
      process.kill(child.pid!, 'SIGSTOP');
      const [will] = await sub.got.next(1, 10_000);
      expect(will!.payload.toString()).toBe('stopped');
      const line = await closedLine(broker, { clientId });
      expect(line.reason).toBe('keepalive_timeout');
    } finally {
      process.kill(child.pid!, 'SIGCONT');
      child.kill('SIGKILL');
      await once(child, 'exit').catch(() => undefined);
    }
    await endAll([sub.client]);
  });

  it('enables TCP keepalive on accepted sockets (timeouts.tcpKeepAliveMs), visible as a keepalive timer in ss', async () => {
    const raw = await RawClient.connect(broker.port, 4);
    await raw.handshake({ keepalive: 0 });
    const local = raw.socket.localPort!;
    // The broker's end of this connection: source port = broker port, destination = our local port.
    const { stdout } = await promisify(execFile)('ss', ['-tnoH', 'state', 'established', `( sport = :${broker.port} and dport = :${local} )`]);
    expect(stdout).toMatch(/timer:\(keepalive,/);
    // The kernel's first probe waits tcpKeepAliveMs (20 s): the timer shows at most that.
    const secs = /timer:\(keepalive,(\d+)(?:\.\d+)?sec/.exec(stdout);
    if (secs) expect(Number(secs[1])).toBeLessThanOrEqual(TCP_KEEPALIVE_MS / 1000);
    raw.send({ cmd: 'disconnect' });
    await raw.closed;
  });
});

describe('keepalive 0 refused (keepalive.allowZero false)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--timeouts.connectMs', '1000', '--keepalive.allowZero', 'false', '--keepalive.maxSeconds', String(MAX_KEEPALIVE)] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('refuses a v3.1.1 client with keepalive 0 with CONNACK 0x02 and closes', async () => {
    const raw = await RawClient.connect(broker.port, 4);
    const ack = await raw.handshake({ keepalive: 0 });
    expect(ack.returnCode).toBe(0x02);
    expect(await raw.closedWithin(5000)).toBe(true);
  });

  it('gives a v5 client with keepalive 0 the maximum as Server Keep Alive and holds it to that', async () => {
    const raw = await RawClient.connect(broker.port, 5);
    const ack = await raw.handshake({ keepalive: 0 });
    expect(ack.reasonCode).toBe(0);
    expect(ack.properties?.serverKeepAlive).toBe(MAX_KEEPALIVE);
    const disconnect = await raw.next<mqttPacket.IDisconnectPacket>('disconnect', 15_000);
    expect(disconnect.reasonCode).toBe(0x8d);
    expect(await raw.closedWithin(5000)).toBe(true);
  });
});

describe('keepalive while the broker itself stops reading a client (backpressure)', () => {
  const SLOW_MS = 4000;
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--timeouts.connectMs', '1000', '--limits.slowConsumerMs', String(SLOW_MS)] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('does not count the time a publisher is held by backpressure against its keepalive', async () => {
    const topic = `ka/flood/${uniqueId()}`;
    // A subscriber that stops reading: the broker's writes to it back up.
    const reader = await RawClient.connect(broker.port, 4);
    await reader.handshake({ keepalive: 0 });
    reader.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] } as mqttPacket.ISubscribePacket);
    await reader.next('suback');
    reader.socket.pause();

    const publisher = await RawClient.connect(broker.port, 4);
    const clientId = uniqueId('held');
    await publisher.handshake({ clientId, keepalive: 1 });
    const payload = Buffer.alloc(64 * 1024, 0x61);
    const started = Date.now();
    // 32 MiB, far beyond what the socket buffers between broker and reader hold: the broker stops
    // reading the publisher until the reader is declared slow (limits.slowConsumerMs).
    for (let i = 0; i < 512; i++) publisher.send({ cmd: 'publish', topic, payload, qos: 0, dup: false, retain: false });
    // Drained (the broker reads it again), or closed (the failure this test is about).
    await new Promise((resolve) => {
      publisher.socket.once('drain', resolve);
      publisher.socket.once('close', resolve);
    });
    // Held for longer than 1.5 × its keepalive, through no fault of its own...
    expect(Date.now() - started).toBeGreaterThan(1500);
    // ...and still connected.
    expect(broker.logs.filter((l) => l.msg === 'connection closed' && l.clientId === clientId)).toEqual([]);
    publisher.send({ cmd: 'pingreq' });
    await publisher.next('pingresp', 10_000);
    publisher.send({ cmd: 'disconnect' });
    await publisher.closed;
    reader.destroy();
  });
});
