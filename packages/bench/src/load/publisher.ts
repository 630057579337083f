// One publishing connection. Two send paths:
//  - unpaced ("as fast as the broker takes it"): QoS 0 writes a pre-built batch of identical
//    packets until the socket pushes back; QoS 1/2 write contiguous slices of a pre-built ring
//    of packets with ids already patched in, bounded by the in-flight window.
//  - paced (fixed rate, used by `latency` and `--rate`): every 1 ms tick builds the packets due,
//    patching packet id and send timestamp into copies of the template.

import type net from 'node:net';
import type { ProtocolVersion, Qos } from '../types.ts';
import { FrameScanner, PUBACK, PUBCOMP, PUBREC } from './frames.ts';
import { ackHeader, publishRing, repeatPacket, STAMP_BYTES, type PublishTemplate } from './packets.ts';
import type { Totals } from './totals.ts';

export interface PublisherConfig {
  socket: net.Socket;
  qos: Qos;
  protocol: ProtocolVersion;
  template: PublishTemplate;
  /** Max QoS>0 messages awaiting PUBACK/PUBCOMP. */
  inflight: number;
  /** Messages this publisher may send in total. */
  quota: number;
  /** Messages per second; 0 = unpaced. */
  rate: number;
  /** hrtime origin shared by all threads; timestamps are ns since it. */
  epoch: bigint;
  totals: Totals;
  onError: (msg: string) => void;
}

const BATCH_BYTES = 16 * 1024;
const RING_BYTES = 4 * 1024 * 1024;
const MAX_PER_TICK = 2000;

export class Publisher {
  private c: PublisherConfig;
  private len: number;
  private running = false;
  private sent = 0;
  private open = 0;
  /** awaiting[id] = 1 while a QoS>0 PUBLISH with that id is unacknowledged. */
  private awaiting = new Uint8Array(65536);
  private batch: Buffer | null = null;
  private batchCount = 0;
  private ring: Buffer | null = null;
  private ringCount = 0;
  private nextSlot = 0;
  private nextId = 1;
  private timer: NodeJS.Timeout | null = null;
  private t0 = 0n;
  private stamp: boolean;
  private scanner: FrameScanner;
  private pubrels: number[] = [];

  constructor(c: PublisherConfig) {
    this.c = c;
    this.len = c.template.packet.length;
    this.stamp = c.rate > 0 && c.template.packet.length - c.template.payloadOffset >= STAMP_BYTES;
    if (c.rate === 0 && c.qos === 0) {
      this.batchCount = Math.max(1, Math.min(256, Math.floor(BATCH_BYTES / this.len)));
      this.batch = repeatPacket(c.template.packet, this.batchCount);
    } else if (c.rate === 0) {
      this.ringCount = Math.min(65535, Math.max(4 * c.inflight, Math.floor(RING_BYTES / this.len)));
      this.ring = publishRing(c.template, this.ringCount);
    }
    this.scanner = new FrameScanner((type, _flags, buf, start, end) => {
      if (type === PUBACK || type === PUBCOMP) this.complete((buf[start]! << 8) | buf[start + 1]!);
      else if (type === PUBREC) {
        const id = (buf[start]! << 8) | buf[start + 1]!;
        // MQTT 5: a PUBREC reason code >= 0x80 ends the flow without PUBREL.
        if (end - start > 2 && buf[start + 2]! >= 0x80) {
          c.onError(`PUBREC reason 0x${buf[start + 2]!.toString(16)}`);
          this.complete(id);
        } else this.pubrels.push(id);
      }
    });
    c.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    c.socket.resume();
  }

  start(): void {
    this.running = true;
    if (this.c.rate > 0) {
      this.t0 = process.hrtime.bigint();
      this.timer = setInterval(() => this.tick(), 1);
    } else this.pump();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private onData(chunk: Buffer): void {
    try {
      this.scanner.push(chunk);
    } catch (err) {
      this.c.onError((err as Error).message);
      this.c.socket.destroy();
      return;
    }
    if (this.pubrels.length > 0) {
      const out = Buffer.allocUnsafe(this.pubrels.length * 4);
      const h = ackHeader(6);
      for (let i = 0; i < this.pubrels.length; i++) {
        out[i * 4] = h;
        out[i * 4 + 1] = 2;
        out.writeUInt16BE(this.pubrels[i]!, i * 4 + 2);
      }
      this.pubrels.length = 0;
      this.c.socket.write(out);
    }
    if (this.ring && this.running) this.pump();
  }

  private complete(id: number): void {
    if (this.awaiting[id] === 0) return;
    this.awaiting[id] = 0;
    this.open--;
    this.c.totals.acked++;
  }

  private pump(): void {
    if (!this.running || this.c.socket.destroyed) return;
    if (this.batch) this.pumpQos0();
    else this.pumpRing();
  }

  private pumpQos0(): void {
    const s = this.c.socket;
    // Bounded number of writes per turn so other connections on this thread get a turn too.
    for (let rounds = 0; rounds < 32; rounds++) {
      const left = this.c.quota - this.sent;
      if (left <= 0) return this.stop();
      const n = Math.min(this.batchCount, left);
      const ok = s.write(n === this.batchCount ? this.batch! : this.batch!.subarray(0, n * this.len));
      this.sent += n;
      this.c.totals.sent += n;
      if (!ok) {
        s.once('drain', () => this.pump());
        return;
      }
    }
    setImmediate(() => this.pump());
  }

  private pumpRing(): void {
    // The window bounds what is queued, so socket backpressure needs no separate handling.
    let can = Math.min(this.c.inflight - this.open, this.c.quota - this.sent);
    while (can > 0) {
      const first = this.nextSlot;
      let n = 0;
      // Slot i carries id i+1; stop at an id still awaiting its ack (acks out of order).
      while (n < can && first + n < this.ringCount && this.awaiting[first + n + 1] === 0) {
        this.awaiting[first + n + 1] = 1;
        n++;
      }
      if (n === 0) break;
      this.c.socket.write(this.ring!.subarray(first * this.len, (first + n) * this.len));
      this.nextSlot = (first + n) % this.ringCount;
      this.open += n;
      this.sent += n;
      this.c.totals.sent += n;
      can -= n;
    }
    if (this.sent >= this.c.quota) this.running = false;
  }

  private tick(): void {
    if (!this.running || this.c.socket.destroyed) return;
    const s = this.c.socket;
    // Do not queue unboundedly in user space when the broker stops reading.
    if (s.writableNeedDrain) return;
    const elapsedNs = Number(process.hrtime.bigint() - this.t0);
    const due = Math.min(this.c.quota, Math.floor((elapsedNs / 1e9) * this.c.rate));
    let n = Math.min(due - this.sent, MAX_PER_TICK);
    if (this.c.qos > 0) n = Math.min(n, this.c.inflight - this.open);
    if (n <= 0) {
      if (this.sent >= this.c.quota) this.stop();
      return;
    }
    const t = this.c.template;
    const out = Buffer.allocUnsafe(n * this.len);
    const stampNs = Number(process.hrtime.bigint() - this.c.epoch);
    let k = 0;
    for (; k < n; k++) {
      const at = k * this.len;
      t.packet.copy(out, at);
      if (this.c.qos > 0) {
        const id = this.takeId();
        if (id === 0) break;
        out.writeUInt16BE(id, at + t.idOffset);
      }
      if (this.stamp) out.writeDoubleBE(stampNs, at + t.payloadOffset);
    }
    if (k === 0) return;
    s.write(k === n ? out : out.subarray(0, k * this.len));
    this.sent += k;
    this.c.totals.sent += k;
  }

  /** Next free packet id for the paced path, 0 if all 65535 are in use. */
  private takeId(): number {
    for (let tries = 0; tries < 65535; tries++) {
      const id = this.nextId;
      this.nextId = id === 65535 ? 1 : id + 1;
      if (this.awaiting[id] === 0) {
        this.awaiting[id] = 1;
        this.open++;
        return id;
      }
    }
    return 0;
  }
}
