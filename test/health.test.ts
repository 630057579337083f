// /healthz and /readyz on the metrics port through a node's life: 503 on /readyz while it starts,
// 200 once the MQTT listener accepts, 503 again as soon as SIGTERM starts the drain (while clients are
// still connected), then exit. And metrics.enabled=false: /metrics is gone, the probes are not.
import type { IDisconnectPacket } from 'mqtt-packet';
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { launchBroker, startBroker, type BrokerProcess } from './helpers/broker.ts';
import { RawClient, uniqueId } from './helpers/clients.ts';

async function probe(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** Whether a TCP connection to the MQTT port is accepted (and not refused). */
async function accepts(port: number): Promise<boolean> {
  const s = net.connect(port, '127.0.0.1');
  try {
    await once(s, 'connect');
    return true;
  } catch {
    return false;
  } finally {
    s.destroy();
  }
}

describe('health and readiness', () => {
  let broker: BrokerProcess | null = null;
  afterEach(async () => {
    await broker?.stop('SIGKILL');
    broker = null;
  });

  it('/readyz is 503 while the node starts and 200 once MQTT accepts; /healthz is 200 with its workers', async () => {
    // Six workers to start: the metrics port is up (it starts first) well before the MQTT listener.
    broker = launchBroker({ workers: 6 });
    const up = await broker.waitForLog((l) => l.msg === 'metrics listening', 20_000);
    const metricsPort = up.port as number;
    const statuses: number[] = [];
    for (let i = 0; i < 400; i++) {
      const { status } = await probe(metricsPort, '/readyz');
      statuses.push(status);
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(statuses[0]).toBe(503);
    expect(statuses.at(-1)).toBe(200);
    expect(new Set(statuses)).toEqual(new Set([503, 200]));
    const listening = await broker.waitForLog((l) => l.msg === 'starling listening');
    expect(await accepts(listening.port as number)).toBe(true);
    const health = await probe(metricsPort, '/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toBe('ok: 6 workers\n');
    expect((await probe(metricsPort, '/metrics')).status).toBe(200);
    expect((await probe(metricsPort, '/nothing')).status).toBe(404);
  });

  it('SIGTERM: /readyz turns 503 while a client is still connected, /healthz stays 200, then the client is told and the process exits', async () => {
    broker = await startBroker({ workers: 2, args: ['--timeouts.drainMs', '1500'] });
    const b = broker;
    const client = await RawClient.connect(b.port, 5);
    await client.handshake({ clientId: uniqueId('drain') });
    expect((await probe(b.metricsPort, '/readyz')).status).toBe(200);

    b.child.kill('SIGTERM');
    await b.waitForLog((l) => l.msg === 'draining');
    const ready = await probe(b.metricsPort, '/readyz');
    expect(ready).toEqual({ status: 503, body: 'not ready\n' });
    // Still alive and still serving the connected client during the drain.
    expect((await probe(b.metricsPort, '/healthz')).status).toBe(200);
    client.send({ cmd: 'pingreq' });
    await client.next('pingresp');
    expect(client.received.some((p) => p.cmd === 'disconnect')).toBe(false);
    // No new MQTT connections meanwhile.
    expect(await accepts(b.port)).toBe(false);

    // Then: DISCONNECT 0x8B Server shutting down, and a clean exit.
    const dis = await client.next<IDisconnectPacket>('disconnect', 10_000);
    expect(dis.reasonCode).toBe(0x8b);
    expect(await b.exited).toBe(0);
    expect(b.logs.some((l) => l.msg === 'starling stopped')).toBe(true);
  });

  it('metrics.enabled=false: /metrics answers 404, the probes and MQTT work', async () => {
    broker = await startBroker({ workers: 2, args: ['--metrics.enabled', 'false'] });
    expect((await probe(broker.metricsPort, '/metrics')).status).toBe(404);
    expect((await probe(broker.metricsPort, '/healthz')).status).toBe(200);
    expect((await probe(broker.metricsPort, '/readyz')).status).toBe(200);
    const c = await RawClient.connect(broker.port, 4);
    expect((await c.handshake({ clientId: uniqueId('nometrics') })).returnCode).toBe(0);
    c.destroy();
  });
});
