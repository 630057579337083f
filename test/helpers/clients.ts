// MQTT clients for tests: the `mqtt` package for well-behaved clients, raw sockets with mqtt-packet
// for what a library would refuse to send.
import { once } from 'node:events';
import net from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket, { type Packet } from 'mqtt-packet';

let seq = 0;
export function uniqueId(prefix = 'c'): string {
  return `${prefix}-${process.pid}-${++seq}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Connects with the `mqtt` package; rejects on connection error. No automatic reconnects. */
export async function connectClient(port: number, opts: IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId: uniqueId(),
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 4,
    ...opts,
  });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
  return client;
}

export interface Received {
  topic: string;
  payload: Buffer;
  packet: mqttPacket.IPublishPacket;
}

/** Collects messages a client receives; next(n) returns the next n not yet taken (awaiting them). */
export function collect(client: MqttClient): {
  messages: Received[];
  next(n?: number, timeoutMs?: number): Promise<Received[]>;
} {
  const messages: Received[] = [];
  let taken = 0;
  let waiters: Array<{ count: number; resolve: () => void }> = [];
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload, packet: packet as mqttPacket.IPublishPacket });
    waiters = waiters.filter((w) => {
      if (messages.length >= w.count) {
        w.resolve();
        return false;
      }
      return true;
    });
  });
  return {
    messages,
    next(n = 1, timeoutMs = 5000) {
      const from = taken;
      const target = taken + n;
      taken = target;
      if (messages.length >= target) return Promise.resolve(messages.slice(from, target));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`expected ${target} message(s) in all, have ${messages.length}`)), timeoutMs);
        waiters.push({
          count: target,
          resolve: () => {
            clearTimeout(timer);
            resolve(messages.slice(from, target));
          },
        });
      });
    },
  };
}

/** A raw MQTT connection: send any packet or bytes, await the packets the broker sends back. */
export class RawClient {
  readonly socket: net.Socket;
  readonly received: Packet[] = [];
  private readonly parser: ReturnType<typeof mqttPacket.parser>;
  private waiters: Array<{ pred: (p: Packet) => boolean; resolve: (p: Packet) => void }> = [];
  readonly closed: Promise<void>;
  version: 3 | 4 | 5;

  constructor(socket: net.Socket, version: 3 | 4 | 5) {
    this.socket = socket;
    this.version = version;
    this.parser = mqttPacket.parser({ protocolVersion: version });
    this.parser.on('packet', (p: Packet) => {
      this.received.push(p);
      for (const w of [...this.waiters]) {
        if (w.pred(p)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(p);
          return;
        }
      }
    });
    socket.on('data', (d) => this.parser.parse(d as Buffer)); // no setEncoding: always a Buffer
    socket.on('error', () => undefined);
    this.closed = once(socket, 'close').then(() => undefined);
  }

  static async connect(port: number, version: 3 | 4 | 5 = 4): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    return new RawClient(socket, version);
  }

  send(packet: Packet): void {
    this.socket.write(mqttPacket.generate(packet, { protocolVersion: this.version }));
  }

  write(bytes: Buffer | Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Next packet (already received and unclaimed, or future) with the given cmd. */
  next<T extends Packet = Packet>(cmd: Packet['cmd'], timeoutMs = 5000, pred: (p: T) => boolean = () => true): Promise<T> {
    const match = (p: Packet) => p.cmd === cmd && pred(p as T);
    const idx = this.received.findIndex(match);
    if (idx >= 0) return Promise.resolve(this.received.splice(idx, 1)[0] as T);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${cmd} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        pred: match,
        resolve: (p) => {
          clearTimeout(timer);
          this.received.splice(this.received.indexOf(p), 1);
          resolve(p as T);
        },
      });
    });
  }

  /** CONNECT and await CONNACK. */
  async handshake(connect: Partial<mqttPacket.IConnectPacket> = {}): Promise<mqttPacket.IConnackPacket> {
    this.send({
      cmd: 'connect',
      protocolId: this.version === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: this.version,
      clientId: uniqueId('raw'),
      clean: true,
      keepalive: 60,
      ...connect,
    } as mqttPacket.IConnectPacket);
    return this.next<mqttPacket.IConnackPacket>('connack');
  }

  /** Resolves true if the broker closes the socket within timeoutMs. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    const result = await Promise.race([this.closed.then(() => true), timeout]);
    clearTimeout(timer);
    return result;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
