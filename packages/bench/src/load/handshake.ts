// Opening a raw MQTT connection: TCP connect, CONNECT/CONNACK and optionally SUBSCRIBE/SUBACK.
// After the handshake the socket is handed over paused, so the caller can attach its own fast
// frame handler without losing bytes.

import net from 'node:net';
import type { Endpoint, ProtocolVersion, Qos } from '../types.ts';
import { CONNACK, FrameScanner, SUBACK, readVarint } from './frames.ts';
import { connectPacket, subscribePacket } from './packets.ts';

export interface OpenOptions {
  endpoint: Endpoint;
  clientId: string;
  protocol: ProtocolVersion;
  keepalive: number;
  timeoutMs: number;
  subscribe?: { filter: string; qos: Qos };
}

export interface OpenedClient {
  socket: net.Socket;
  /** Nanoseconds from TCP connect start to CONNACK. */
  connackNs: number;
}

export function openClient(o: OpenOptions): Promise<OpenedClient> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let connackNs = 0;
    let settled = false;
    const socket = net.connect({ host: o.endpoint.host, port: o.endpoint.port, noDelay: true });
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`handshake timeout for ${o.clientId}`)), o.timeoutMs);
    const scanner = new FrameScanner((type, _flags, buf, start, end) => {
      if (type === CONNACK) {
        // 3.1.1: [session present, return code]; 5.0: [flags, reason code, properties].
        const code = buf[start + 1]!;
        if (code !== 0) return fail(new Error(`CONNACK refused with code ${code}`));
        connackNs = Number(process.hrtime.bigint() - t0);
        if (o.subscribe) socket.write(subscribePacket(o.subscribe.filter, o.subscribe.qos, o.protocol));
        else done();
      } else if (type === SUBACK) {
        let p = start + 2;
        if (o.protocol === 5) p += sumVarint(buf, p);
        const granted = p < end ? buf[p]! : 0x80;
        if (granted >= 0x80) return fail(new Error(`SUBACK refused ${o.subscribe?.filter} (0x${granted.toString(16)})`));
        done();
      }
    });
    const onData = (chunk: Buffer): void => {
      try {
        scanner.push(chunk);
      } catch (err) {
        fail(err as Error);
      }
    };
    const onClose = (): void => fail(new Error(`connection closed during handshake (${o.clientId})`));
    function done(): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.pause();
      socket.off('data', onData);
      socket.off('error', fail);
      socket.off('close', onClose);
      resolve({ socket, connackNs });
    }
    socket.on('data', onData);
    socket.on('error', fail);
    socket.on('close', onClose);
    socket.once('connect', () => socket.write(connectPacket(o.clientId, o.protocol, o.keepalive)));
  });
}

/** Bytes taken by a properties block (its length varint plus the properties). */
function sumVarint(buf: Buffer, pos: number): number {
  const [len, n] = readVarint(buf, pos);
  return len + n;
}

/** Runs `fn` over `items` with at most `limit` in progress; collects per-item errors. */
export async function mapLimit<T>(items: T[], limit: number, fn: (item: T, i: number) => Promise<void>): Promise<Error[]> {
  const errors: Error[] = [];
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      try {
        await fn(items[i]!, i);
      } catch (err) {
        errors.push(err as Error);
      }
    }
  });
  await Promise.all(lanes);
  return errors;
}
