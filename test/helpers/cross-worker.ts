// Clients placed on a worker thread other than a given one, so a test proves cross-worker routing
// rather than hoping the balancer split the connections. The worker is read from the broker's own
// 'connected' log line; a connection that lands on the wrong worker is held open as ballast (the pool
// picks the least-loaded worker), so a retry goes elsewhere. Bounded to a few attempts.
import type { IClientOptions, MqttClient } from 'mqtt';
import type mqttPacket from 'mqtt-packet';
import type { BrokerProcess } from './broker.ts';
import { connectClient, RawClient, uniqueId } from './clients.ts';
import { connectedWorker } from './placement.ts';

const ATTEMPTS = 8;

/** The worker a connected `mqtt` client lives on (client ids from uniqueId() connect once). */
export function workerOfClient(broker: BrokerProcess, client: MqttClient): Promise<number> {
  return connectedWorker(broker, client.options.clientId!);
}

/** Connects an `mqtt` client (fresh client id) on a worker other than `notOn`. */
export async function connectOffWorker(broker: BrokerProcess, notOn: number, opts: IClientOptions = {}): Promise<{ client: MqttClient; worker: number }> {
  const ballast: MqttClient[] = [];
  try {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const clientId = uniqueId();
      const client = await connectClient(broker.port, { ...opts, clientId });
      const worker = await connectedWorker(broker, clientId);
      if (worker !== notOn) return { client, worker };
      ballast.push(client);
    }
    throw new Error(`no connection landed off worker ${notOn} in ${ATTEMPTS} attempts`);
  } finally {
    await Promise.all(ballast.map((c) => c.endAsync(true)));
  }
}

/** A raw client (after CONNACK) on a worker other than `notOn`. */
export async function rawOffWorker(
  broker: BrokerProcess,
  notOn: number,
  version: 4 | 5,
  connect: Partial<mqttPacket.IConnectPacket> = {},
): Promise<{ raw: RawClient; worker: number; connack: mqttPacket.IConnackPacket }> {
  const ballast: RawClient[] = [];
  try {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const clientId = uniqueId('raw');
      const raw = await RawClient.connect(broker.port, version);
      const connack = await raw.handshake({ ...connect, clientId });
      const worker = await connectedWorker(broker, clientId);
      if (worker !== notOn) return { raw, worker, connack };
      ballast.push(raw);
    }
    throw new Error(`no raw connection landed off worker ${notOn} in ${ATTEMPTS} attempts`);
  } finally {
    for (const r of ballast) r.destroy();
  }
}
