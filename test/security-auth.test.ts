// Authentication: password file (scrypt, checked off every event loop), anonymous access, reload on
// SIGHUP and on change, rate limiting of failures per address, "server busy" when the check queue is full.
import type { IConnackPacket } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, RawClient, uniqueId } from './helpers/clients.ts';
import { metricValue, scrape } from './helpers/metrics.ts';
import { passwdAdd, tempDir } from './helpers/security.ts';

/** CONNECT over a raw socket with the given credentials; the CONNACK code and whether the socket then closed. */
async function attempt(port: number, version: 4 | 5, username?: string, password?: string): Promise<{ code: number; closed: boolean }> {
  const raw = await RawClient.connect(port, version);
  const connect: Record<string, unknown> = { clientId: uniqueId('auth') };
  if (username !== undefined) connect.username = username;
  if (password !== undefined) connect.password = Buffer.from(password);
  const ack = await raw.handshake(connect);
  const code = (version === 5 ? ack.reasonCode : ack.returnCode) ?? 0;
  const closed = code === 0 ? false : await raw.closedWithin(5000);
  raw.destroy();
  return { code, closed };
}

describe('password file', () => {
  const tmp = tempDir();
  const file = `${tmp.dir}/passwords`;
  let broker: BrokerProcess;
  beforeAll(async () => {
    passwdAdd(file, 'alice', 'wonderland');
    passwdAdd(file, 'bob', 'builder');
    broker = await startBroker({ args: ['--auth.passwordFile', file, '--auth.failuresPerMinutePerAddress', '0'] });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('accepts a known user with the right password (v3.1.1 and v5) and the client can publish and receive', async () => {
    expect(await attempt(broker.port, 4, 'alice', 'wonderland')).toEqual({ code: 0, closed: false });
    expect(await attempt(broker.port, 5, 'bob', 'builder')).toEqual({ code: 0, closed: false });
    const client = await connectClient(broker.port, { username: 'alice', password: 'wonderland' });
    const topic = `auth/ok/${uniqueId()}`;
    await client.subscribeAsync(topic, { qos: 1 });
    const got = new Promise<string>((resolve) => client.once('message', (_t, p) => resolve(p.toString())));
    await client.publishAsync(topic, 'hello', { qos: 1 });
    expect(await got).toBe('hello');
    await client.endAsync();
  });

  it('a wrong password gets 0x04 (v3.1.1) / 0x86 (v5) and is closed; an unknown user gets exactly the same', async () => {
    expect(await attempt(broker.port, 4, 'alice', 'wrong')).toEqual({ code: 0x04, closed: true });
    expect(await attempt(broker.port, 5, 'alice', 'wrong')).toEqual({ code: 0x86, closed: true });
    expect(await attempt(broker.port, 4, 'mallory', 'wonderland')).toEqual({ code: 0x04, closed: true });
    expect(await attempt(broker.port, 5, 'mallory', 'wonderland')).toEqual({ code: 0x86, closed: true });
    // A username without password (allowed by v3.1.1/v5) is a wrong password.
    expect(await attempt(broker.port, 4, 'alice')).toEqual({ code: 0x04, closed: true });
  });

  it('refusals are counted, and nothing logged tells a wrong password from an unknown user', async () => {
    const text = await scrape(broker.metricsPort);
    expect(metricValue(text, 'starling_connection_attempts_total', { result: 'bad_credentials' })).toBeGreaterThanOrEqual(5);
    const refusals = broker.logs.filter((l) => l.msg === 'connect refused by authentication');
    expect(refusals.length).toBeGreaterThanOrEqual(5);
    const forUnknown = refusals.filter((l) => l.username === 'mallory').map((l) => ({ ...l, time: 0, pid: 0, conn: 0, worker: 0, clientId: '', username: '' }));
    const forKnown = refusals.filter((l) => l.username === 'alice').map((l) => ({ ...l, time: 0, pid: 0, conn: 0, worker: 0, clientId: '', username: '' }));
    expect(forUnknown.length).toBeGreaterThan(0);
    expect(new Set(forUnknown.map((l) => JSON.stringify(l)))).toEqual(new Set(forKnown.map((l) => JSON.stringify(l))));
    expect(broker.logs.some((l) => /unknown user|no such user/i.test(JSON.stringify(l)))).toBe(false);
  });

  it('anonymous clients are accepted by default (auth.allowAnonymous true)', async () => {
    expect(await attempt(broker.port, 4)).toEqual({ code: 0, closed: false });
    expect(await attempt(broker.port, 5)).toEqual({ code: 0, closed: false });
  });
});

describe('anonymous refused, reload on SIGHUP', () => {
  const tmp = tempDir();
  const file = `${tmp.dir}/passwords`;
  let broker: BrokerProcess;
  beforeAll(async () => {
    passwdAdd(file, 'alice', 'wonderland');
    // No file watch here: only SIGHUP reloads, so the test shows SIGHUP does.
    broker = await startBroker({
      args: ['--auth.passwordFile', file, '--auth.allowAnonymous', 'false', '--auth.watchPasswordFile', 'false', '--auth.failuresPerMinutePerAddress', '0'],
    });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('a CONNECT without username gets 0x05 (v3.1.1) / 0x87 (v5), counted as not_authorized', async () => {
    const before = metricValue(await scrape(broker.metricsPort), 'starling_connection_attempts_total', { result: 'not_authorized' });
    expect(await attempt(broker.port, 4)).toEqual({ code: 0x05, closed: true });
    expect(await attempt(broker.port, 5)).toEqual({ code: 0x87, closed: true });
    const after = metricValue(await scrape(broker.metricsPort), 'starling_connection_attempts_total', { result: 'not_authorized' });
    expect(after - before).toBe(2);
    expect(await attempt(broker.port, 4, 'alice', 'wonderland')).toEqual({ code: 0, closed: false });
  });

  it('a user added to the file is refused until SIGHUP, accepted after; a changed password takes over', async () => {
    passwdAdd(file, 'carol', 'first');
    expect((await attempt(broker.port, 4, 'carol', 'first')).code).toBe(0x04);
    const reloads = broker.logs.filter((l) => l.msg === 'password file reloaded').length;
    broker.child.kill('SIGHUP');
    await broker.waitForLog((l) => l.msg === 'password file reloaded' && broker.logs.filter((x) => x.msg === 'password file reloaded').length > reloads);
    expect((await attempt(broker.port, 4, 'carol', 'first')).code).toBe(0);

    passwdAdd(file, 'carol', 'second');
    broker.child.kill('SIGHUP');
    await broker.waitForLog((l) => l.msg === 'password file reloaded' && broker.logs.filter((x) => x.msg === 'password file reloaded').length > reloads + 1);
    expect((await attempt(broker.port, 4, 'carol', 'first')).code).toBe(0x04);
    expect((await attempt(broker.port, 5, 'carol', 'second')).code).toBe(0);
    expect(broker.child.exitCode).toBeNull(); // SIGHUP reloads, never stops the broker
  });

  it('a broken file on reload keeps the previous users (logged, counted)', async () => {
    const { appendFileSync } = await import('node:fs');
    appendFileSync(file, 'this line is not a user\n');
    broker.child.kill('SIGHUP');
    await broker.waitForLog((l) => l.msg === 'password file reload failed; keeping the previous users');
    expect((await attempt(broker.port, 4, 'alice', 'wonderland')).code).toBe(0);
    expect(metricValue(await scrape(broker.metricsPort), 'starling_auth_reloads_total', { result: 'error' })).toBeGreaterThanOrEqual(1);
  });
});

describe('reload when the file changes', () => {
  const tmp = tempDir();
  const file = `${tmp.dir}/passwords`;
  let broker: BrokerProcess;
  beforeAll(async () => {
    passwdAdd(file, 'alice', 'wonderland');
    broker = await startBroker({ args: ['--auth.passwordFile', file] });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('starling-passwd add is picked up without a signal', async () => {
    passwdAdd(file, 'dave', 'diver');
    await broker.waitForLog((l) => l.msg === 'password file reloaded' && l.cause === 'file changed');
    expect((await attempt(broker.port, 4, 'dave', 'diver')).code).toBe(0);
  });
});

describe('failed logins rate-limited per address', () => {
  const tmp = tempDir();
  const file = `${tmp.dir}/passwords`;
  let broker: BrokerProcess;
  beforeAll(async () => {
    passwdAdd(file, 'alice', 'wonderland');
    broker = await startBroker({ args: ['--auth.passwordFile', file, '--auth.failuresPerMinutePerAddress', '3'] });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('after 3 failures within a minute even the right password gets 0x04 / 0x86, without a check, counted', async () => {
    for (let i = 0; i < 3; i++) expect((await attempt(broker.port, 4, 'alice', `guess-${i}`)).code).toBe(0x04);
    const checksBefore = metricValue(await scrape(broker.metricsPort), 'starling_auth_checks_total');
    expect(await attempt(broker.port, 4, 'alice', 'wonderland')).toEqual({ code: 0x04, closed: true });
    expect(await attempt(broker.port, 5, 'alice', 'wonderland')).toEqual({ code: 0x86, closed: true });
    const text = await scrape(broker.metricsPort);
    expect(metricValue(text, 'starling_auth_rate_limited_total')).toBe(2);
    expect(metricValue(text, 'starling_auth_checks_total', { result: 'bad_credentials' })).toBe(5);
    expect(metricValue(text, 'starling_auth_checks_total') - checksBefore).toBe(2);
    expect(broker.logs.some((l) => l.msg === 'connect refused by authentication' && l.rateLimited === true)).toBe(true);
  });
});

describe('a storm of authenticating clients', () => {
  const tmp = tempDir();
  const file = `${tmp.dir}/passwords`;
  let broker: BrokerProcess;
  beforeAll(async () => {
    passwdAdd(file, 'alice', 'wonderland');
    passwdAdd(file, 'storm', 'rain');
    broker = await startBroker({ args: ['--auth.passwordFile', file, '--auth.failuresPerMinutePerAddress', '0', '--timeouts.connectMs', '60000'] });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('300 clients authenticating at once do not stall a connected client: its PINGRESPs keep arriving', async () => {
    const pinger = await RawClient.connect(broker.port, 4);
    expect((await pinger.handshake({ username: 'alice', password: Buffer.from('wonderland') })).returnCode).toBe(0);

    let stormDone = false;
    let pingsDuringStorm = 0;
    const pinging = (async () => {
      // Bounded: at most 2,000 round trips, each with a generous timeout (a liveness check, not a latency bound).
      for (let i = 0; i < 2000 && !stormDone; i++) {
        pinger.send({ cmd: 'pingreq' });
        await pinger.next('pingresp', 15_000);
        if (!stormDone) pingsDuringStorm++;
      }
    })();

    const N = 300;
    const storm = Array.from({ length: N }, async (_, i) => {
      const raw = await RawClient.connect(broker.port, i % 2 === 0 ? 4 : 5);
      const ack = await raw.handshake({ username: 'storm', password: Buffer.from(i % 3 === 0 ? 'wrong' : 'rain') }).finally(() => undefined);
      raw.destroy();
      return (raw.version === 5 ? ack.reasonCode : ack.returnCode) ?? 0;
    });
    const codes = await Promise.all(storm.map((p) => p.catch((e: Error) => e.message)));
    stormDone = true;
    await pinging;
    console.log(`auth storm: ${N} CONNECTs settled, ${pingsDuringStorm} PINGREQ/PINGRESP round trips completed meanwhile`);
    expect(codes.filter((c) => c === 0)).toHaveLength(N - Math.ceil(N / 3));
    expect(codes.filter((c) => c === 0x04 || c === 0x86)).toHaveLength(Math.ceil(N / 3));
    expect(pingsDuringStorm).toBeGreaterThan(5);
    pinger.destroy();
  }, 120_000);
});

describe('bounded queue of password checks', () => {
  const tmp = tempDir();
  const file = `${tmp.dir}/passwords`;
  let broker: BrokerProcess;
  beforeAll(async () => {
    passwdAdd(file, 'slow', 'pw', 16384);
    broker = await startBroker({ args: ['--auth.passwordFile', file, '--auth.maxPendingHashes', '2', '--auth.failuresPerMinutePerAddress', '0'] });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('beyond auth.maxPendingHashes a CONNECT gets "server busy": v5 0x89, v3.1.1 0x03, counted', async () => {
    const codes = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const raw = await RawClient.connect(broker.port, i % 2 === 0 ? 5 : 4);
        const ack: IConnackPacket = await raw.handshake({ username: 'slow', password: Buffer.from('pw') });
        raw.destroy();
        return { v: raw.version, code: (raw.version === 5 ? ack.reasonCode : ack.returnCode) ?? 0 };
      }),
    );
    const busy = codes.filter((c) => (c.v === 5 && c.code === 0x89) || (c.v === 4 && c.code === 0x03));
    expect(busy.length).toBeGreaterThan(0);
    expect(codes.filter((c) => c.code === 0).length).toBeGreaterThanOrEqual(2);
    expect(busy.length + codes.filter((c) => c.code === 0).length).toBe(30);
    const text = await scrape(broker.metricsPort);
    expect(metricValue(text, 'starling_connection_attempts_total', { result: 'server_busy' })).toBe(busy.length);
  }, 60_000);
});
