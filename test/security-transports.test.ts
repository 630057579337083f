// Transports: MQTT over TLS (handshake in the worker, client certificates, CN as username, certificates
// reloaded on SIGHUP), over WebSocket (upgrade in the worker, subprotocol mqtt), and the PROXY protocol.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket, { type IConnackPacket, type ISubackPacket } from 'mqtt-packet';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, startBroker, type BrokerProcess } from './helpers/broker.ts';
import { connectClient, RawClient, uniqueId } from './helpers/clients.ts';
import { makePki, type TestPki } from './helpers/certs.ts';
import { metricValue, scrape } from './helpers/metrics.ts';
import { tempDir } from './helpers/security.ts';
import { proxyV1, proxyV2 } from '../packages/core/src/transports/proxy-protocol.ts';

function listenerPort(broker: BrokerProcess, name: string): number {
  const line = broker.logs.find((l) => l.msg === 'transport listening' && l.listener === name);
  if (!line) throw new Error(`no ${name} listener`);
  return line.port as number;
}

async function open(url: string, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(url, { clientId: uniqueId('tr'), reconnectPeriod: 0, connectTimeout: 10_000, protocolVersion: 4, ...opts });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
  return client;
}

async function roundTrip(from: MqttClient, to: MqttClient): Promise<void> {
  const topic = `tr/${uniqueId()}`;
  await to.subscribeAsync(topic, { qos: 1 });
  const got = new Promise<string>((resolve) => to.once('message', (_t, p) => resolve(p.toString())));
  await from.publishAsync(topic, 'across', { qos: 1 });
  expect(await got).toBe('across');
}

describe('TLS and WebSocket listeners', () => {
  const tmp = tempDir();
  let pki: TestPki;
  let broker: BrokerProcess;
  beforeAll(async () => {
    pki = makePki(tmp.dir);
    broker = await startBroker({
      args: [
        '--tls.port', '0', '--tls.certFile', pki.serverCert, '--tls.keyFile', pki.serverKey, '--tls.caFile', pki.caCert,
        '--ws.port', '0', '--ws.path', '/mqtt',
      ],
    });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('mqtts:// with the CA: v3.1.1 and v5 clients talk with a plain TCP client', async () => {
    const port = listenerPort(broker, 'tls');
    const secure = await open(`mqtts://127.0.0.1:${port}`, { ca: readFileSync(pki.caCert), rejectUnauthorized: true });
    const secure5 = await open(`mqtts://localhost:${port}`, { ca: readFileSync(pki.caCert), protocolVersion: 5 });
    const plain = await connectClient(broker.port);
    await roundTrip(secure, plain);
    await roundTrip(plain, secure5);
    await Promise.all([secure.endAsync(), secure5.endAsync(), plain.endAsync()]);
  });

  it('ws:// on the configured path with subprotocol mqtt; other paths are refused', async () => {
    const port = listenerPort(broker, 'ws');
    const viaWs = await open(`ws://127.0.0.1:${port}/mqtt`);
    const viaWs5 = await open(`ws://127.0.0.1:${port}/mqtt`, { protocolVersion: 5 });
    const plain = await connectClient(broker.port);
    await roundTrip(viaWs, plain);
    await roundTrip(plain, viaWs5);
    await roundTrip(viaWs5, viaWs);
    await Promise.all([viaWs.endAsync(), viaWs5.endAsync(), plain.endAsync()]);

    const ws = new WebSocket(`ws://127.0.0.1:${port}/mqtt`, ['mqtt']);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    expect(ws.protocol).toBe('mqtt');
    ws.close();

    const wrong = new WebSocket(`ws://127.0.0.1:${port}/other`, ['mqtt']);
    const outcome = await new Promise<string>((resolve) => {
      wrong.once('open', () => resolve('open'));
      wrong.once('unexpected-response', (_req: unknown, res: { statusCode?: number }) => resolve(String(res.statusCode)));
      wrong.once('error', (err: Error) => resolve(err.message));
    });
    expect(outcome).not.toBe('open');
  });

  it('a TLS client that does not trust the server, or speaks plain MQTT to the TLS port, fails without harm; counted', async () => {
    const port = listenerPort(broker, 'tls');
    await expect(open(`mqtts://127.0.0.1:${port}`, { rejectUnauthorized: true, connectTimeout: 5000 })).rejects.toThrow();
    const raw = await RawClient.connect(port, 4);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: uniqueId('plain-on-tls'), clean: true, keepalive: 60 });
    expect(await raw.closedWithin(10_000)).toBe(true);
    expect(raw.received).toHaveLength(0);
    const text = await scrape(broker.metricsPort);
    expect(metricValue(text, 'starling_transport_failures_total', { stage: 'tls' })).toBeGreaterThanOrEqual(2);
    expect(metricValue(text, 'starling_transport_connections_total', { listener: 'tls' })).toBeGreaterThanOrEqual(2);
    expect(metricValue(text, 'starling_transport_connections_total', { listener: 'ws' })).toBeGreaterThanOrEqual(3);
    const plain = await connectClient(broker.port);
    await plain.endAsync();
  });

  it('renewed certificates are served after SIGHUP', async () => {
    const port = listenerPort(broker, 'tls');
    const peerCn = () =>
      new Promise<string>((resolve, reject) => {
        const s = tls.connect({ port, host: '127.0.0.1', ca: readFileSync(pki.caCert), servername: 'localhost' }, () => {
          const cn = s.getPeerCertificate().subject.CN;
          s.destroy();
          resolve(String(cn));
        });
        s.once('error', reject);
      });
    expect(await peerCn()).toBe('starling-test-server');
    pki.renewServer('starling-renewed');
    const seen = broker.logs.filter((l) => l.msg === 'tls certificates reloaded').length;
    broker.child.kill('SIGHUP');
    // Every worker re-reads the files (2 workers).
    await broker.waitForLog(() => broker.logs.filter((l) => l.msg === 'tls certificates reloaded').length >= seen + 2);
    expect(await peerCn()).toBe('starling-renewed');
  });
});

describe('client certificates, CN as username', () => {
  const tmp = tempDir();
  let pki: TestPki;
  let broker: BrokerProcess;
  beforeAll(async () => {
    pki = makePki(tmp.dir);
    broker = await startBroker({
      args: [
        '--tls.port', '0', '--tls.certFile', pki.serverCert, '--tls.keyFile', pki.serverKey, '--tls.caFile', pki.caCert,
        '--tls.requestCert', 'true', '--tls.useCnAsUsername', 'true',
        '--auth.allowAnonymous', 'false',
        '--acl', JSON.stringify([{ action: 'all', topic: 'users/%u/#', allow: true }]), '--aclDefault', 'deny',
      ],
    });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('the certificate CN is the username the ACL sees; no certificate or an untrusted one is refused', async () => {
    const port = listenerPort(broker, 'tls');
    const alice = pki.client('alice');
    const client = await open(`mqtts://127.0.0.1:${port}`, { ca: readFileSync(pki.caCert), cert: readFileSync(alice.cert), key: readFileSync(alice.key), protocolVersion: 5 });
    const granted = await client.subscribeAsync('users/alice/x', { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual([1]);
    // mqtt.js rejects a SUBACK refusal (0x87 Not authorized).
    await expect(client.subscribeAsync('users/bob/x', { qos: 1 })).rejects.toThrow(/Not authorized/);
    await client.endAsync();

    await expect(open(`mqtts://127.0.0.1:${port}`, { ca: readFileSync(pki.caCert), connectTimeout: 5000 })).rejects.toThrow();
    const mallory = pki.client('alice', false);
    await expect(open(`mqtts://127.0.0.1:${port}`, { ca: readFileSync(pki.caCert), cert: readFileSync(mallory.cert), key: readFileSync(mallory.key), connectTimeout: 5000 })).rejects.toThrow();
    // Plain TCP has no certificate: anonymous, refused (0x05).
    const raw = await RawClient.connect(broker.port, 4);
    expect((await raw.handshake()).returnCode).toBe(5);
    raw.destroy();
  });
});

describe('PROXY protocol', () => {
  const tmp = tempDir();
  const hookLog = path.join(tmp.dir, 'hook.log');
  let broker: BrokerProcess;
  beforeAll(async () => {
    broker = await startBroker({
      args: ['--proxyProtocol', 'true', '--auth.hookModule', path.join(REPO_ROOT, 'test/fixtures/auth-hook.ts')],
      env: { AUTH_HOOK_LOG: hookLog },
    });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  async function viaProxy(header: Buffer, split: boolean): Promise<IConnackPacket> {
    const socket = net.connect(broker.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const raw = new RawClient(socket, 4);
    const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: uniqueId('px'), clean: true, keepalive: 60 });
    if (split) {
      socket.write(header.subarray(0, 5));
      await new Promise((r) => setTimeout(r, 20));
      socket.write(Buffer.concat([header.subarray(5), connect.subarray(0, 3)]));
      await new Promise((r) => setTimeout(r, 20));
      socket.write(connect.subarray(3));
    } else socket.write(Buffer.concat([header, connect]));
    const ack = await raw.next<IConnackPacket>('connack');
    raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'px/x', qos: 0 }] });
    expect((await raw.next<ISubackPacket>('suback')).granted).toEqual([0]);
    raw.destroy();
    return ack;
  }

  it('v1 and v2 headers (in one write or split) give the hook and the logs the client\'s real address', async () => {
    expect((await viaProxy(proxyV1('203.0.113.7', 40000), false)).returnCode).toBe(0);
    expect((await viaProxy(proxyV2('198.51.100.9', 40001), true)).returnCode).toBe(0);
    expect((await viaProxy(proxyV1('192.0.2.33', 40002), true)).returnCode).toBe(0);
    const addresses = readFileSync(hookLog, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string; address: string })
      .filter((c) => c.kind === 'authenticate')
      .map((c) => c.address);
    expect(addresses).toEqual(['203.0.113.7', '198.51.100.9', '192.0.2.33']);
    expect(broker.logs.some((l) => l.remote === '203.0.113.7')).toBe(true);
  });

  it('a connection without a PROXY header is closed and counted', async () => {
    const raw = await RawClient.connect(broker.port, 4);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: uniqueId('nopx'), clean: true, keepalive: 60 });
    expect(await raw.closedWithin(5000)).toBe(true);
    expect(raw.received).toHaveLength(0);
    expect(metricValue(await scrape(broker.metricsPort), 'starling_transport_failures_total', { stage: 'proxy' })).toBe(1);
  });
});

describe('PROXY protocol in front of TLS and WebSocket', () => {
  const tmp = tempDir();
  const hookLog = path.join(tmp.dir, 'hook.log');
  let pki: TestPki;
  let broker: BrokerProcess;
  beforeAll(async () => {
    pki = makePki(tmp.dir);
    broker = await startBroker({
      args: [
        '--tls.port', '0', '--tls.certFile', pki.serverCert, '--tls.keyFile', pki.serverKey, '--tls.proxyProtocol', 'true',
        '--ws.port', '0', '--ws.proxyProtocol', 'true',
        '--auth.hookModule', path.join(REPO_ROOT, 'test/fixtures/auth-hook.ts'),
      ],
      env: { AUTH_HOOK_LOG: hookLog },
    });
  });
  afterAll(async () => {
    await broker.stop();
    tmp.cleanup();
  });

  it('the header comes first, then the TLS handshake or the HTTP upgrade; the hook sees the real address', async () => {
    // TLS: header and ClientHello may arrive together.
    const tcp = net.connect(listenerPort(broker, 'tls'), '127.0.0.1');
    tcp.write(proxyV2('198.51.100.20', 5000));
    const secure = tls.connect({ socket: tcp, ca: readFileSync(pki.caCert), servername: 'localhost' });
    await new Promise((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    const overTls = new RawClient(secure as unknown as net.Socket, 4);
    expect((await overTls.handshake()).returnCode).toBe(0);
    overTls.destroy();

    const ws = new WebSocket(`ws://127.0.0.1:${listenerPort(broker, 'ws')}/mqtt`, ['mqtt'], {
      createConnection: () => {
        const s = net.connect(listenerPort(broker, 'ws'), '127.0.0.1');
        s.write(proxyV1('203.0.113.21', 5001));
        return s;
      },
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    const connack = new Promise<Buffer>((resolve) => ws.once('message', (d: Buffer) => resolve(d)));
    ws.send(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: uniqueId('wspx'), clean: true, keepalive: 60 }));
    expect([...(await connack)]).toEqual([0x20, 0x02, 0x00, 0x00]);
    ws.close();

    const addresses = readFileSync(hookLog, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string; address: string })
      .filter((c) => c.kind === 'authenticate')
      .map((c) => c.address);
    expect(addresses).toEqual(['198.51.100.20', '203.0.113.21']);
  });
});
