// Issue 3, connection lifecycle: the connect timeout, and timeouts being named, defaulted and validated.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '@starling/core/config.ts';
import { REPO_ROOT, startBroker, type BrokerProcess } from './helpers/broker.ts';
import { RawClient, uniqueId } from './helpers/clients.ts';
import { closedLine, disconnects, LEVEL } from './helpers/lifecycle.ts';

// 2 s rather than 1 s so that a byte every second arrives well inside the deadline: a timer re-armed
// by each byte would then never fire, one counted from accept fires at 2 s.
const CONNECT_MS = 2000;

describe('connect timeout (timeouts.connectMs, counted from accept)', () => {
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({ workers: 2, args: ['--timeouts.connectMs', String(CONNECT_MS)] });
  });
  afterAll(async () => {
    await broker.stop();
  });

  it('closes a socket that sends nothing, not before the deadline, counted once as connect_timeout (info, server)', async () => {
    const before = await disconnects(broker, 'connect_timeout');
    const opened = Date.now(); // before connecting: the broker accepts no earlier
    const raw = await RawClient.connect(broker.port, 4);
    expect(await raw.closedWithin(CONNECT_MS + 8000)).toBe(true);
    // The deadline is a lower bound: the broker must not close earlier (small slack for clock granularity).
    expect(Date.now() - opened).toBeGreaterThanOrEqual(CONNECT_MS - 50);
    expect(raw.received).toEqual([]); // no CONNACK: there was no CONNECT
    const line = await closedLine(broker, { reason: 'connect_timeout' });
    expect(line.level).toBe(LEVEL.info);
    expect(line.initiator).toBe('server');
    expect(await disconnects(broker, 'connect_timeout')).toBe(before + 1);
  });

  it('still closes at the deadline a client trickling one byte per second of a valid CONNECT', async () => {
    const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: uniqueId('trickle'), clean: true, keepalive: 60 });
    const opened = Date.now();
    const raw = await RawClient.connect(broker.port, 4);
    let sent = 0;
    // One byte a second; bounded by the CONNECT's length (it would take ~connect.length seconds).
    const trickle = setInterval(() => {
      if (sent < connect.length && !raw.socket.destroyed) raw.write(connect.subarray(sent, ++sent));
    }, 1000);
    raw.write(connect.subarray(0, ++sent));
    try {
      expect(await raw.closedWithin(CONNECT_MS + 8000)).toBe(true);
    } finally {
      clearInterval(trickle);
    }
    expect(Date.now() - opened).toBeGreaterThanOrEqual(CONNECT_MS - 50);
    // Bytes kept arriving (each less than a second apart, well inside the 2 s deadline), the CONNECT was
    // never complete, and no CONNACK was sent.
    expect(sent).toBeGreaterThanOrEqual(2);
    expect(sent).toBeLessThan(connect.length);
    expect(raw.received).toEqual([]);
  });

  it('is independent of keepalive: a connected client with keepalive 0 outlives the connect deadline', async () => {
    const connected = await RawClient.connect(broker.port, 4);
    const ack = await connected.handshake({ keepalive: 0 });
    expect(ack.returnCode).toBe(0);
    // A socket accepted after the connected client and never sending CONNECT: once the broker has
    // closed it, the connected client has been open longer than connectMs.
    const silent = await RawClient.connect(broker.port, 4);
    expect(await silent.closedWithin(CONNECT_MS + 8000)).toBe(true);
    connected.send({ cmd: 'pingreq' });
    await connected.next('pingresp');
    expect(connected.socket.destroyed).toBe(false);
    connected.send({ cmd: 'disconnect' });
    await connected.closed;
  });
});

describe('timeouts are named config values with documented defaults, validated at start', () => {
  const ENTRY = path.join(REPO_ROOT, 'packages/core/src/bin/starling.ts');

  async function run(args: string[]): Promise<{ code: number | null; stderr: string }> {
    const child = spawn(process.execPath, [ENTRY, '--port', '0', '--metrics.port', '0', '--host', '127.0.0.1', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // A valid config would start listening; these must not get that far.
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    return { code, stderr };
  }

  it('refuses to start with --timeouts.connectMs 0, naming the field, exit code non-zero', async () => {
    const { code, stderr } = await run(['--timeouts.connectMs', '0']);
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(stderr).toContain('timeouts.connectMs');
  });

  it('refuses zero or negative for every other timeout too', async () => {
    for (const [field, value] of [
      ['timeouts.shutdownMs', '0'],
      ['timeouts.tcpKeepAliveMs', '0'],
      ['timeouts.requestMs', '-5'],
      ['keepalive.maxSeconds', '0'],
    ] as const) {
      const { code, stderr } = await run([`--${field}`, value]);
      expect(code, field).not.toBe(0);
      expect(stderr, field).toContain(field);
    }
  });

  // Timeouts whose 0 default is deliberate and documented in the schema ("0: at once"); any other
  // timeout defaulting to 0 fails here.
  const ZERO_BY_DESIGN = new Set(['drainMs']);

  it('defaults every timeout to a positive value (connectMs 10 s); a 0 default only where documented as "none"', () => {
    const cfg = loadConfig([], {});
    expect(cfg.timeouts.connectMs).toBe(10_000);
    for (const [name, value] of Object.entries(cfg.timeouts)) {
      if (ZERO_BY_DESIGN.has(name)) expect(value, name).toBe(0);
      else expect(value, name).toBeGreaterThan(0);
    }
    expect(cfg.keepalive.maxSeconds).toBeGreaterThan(0);
  });
});
