// One subscribing connection: counts PUBLISH frames, acknowledges QoS 1/2 deliveries (batched
// into one write per received chunk) and, for stamped payloads, records end-to-end latency.

import type net from 'node:net';
import type { Histogram } from 'hdr-histogram-js';
import type { ProtocolVersion } from '../types.ts';
import { FrameScanner, PUBLISH, PUBREL, readVarint } from './frames.ts';
import { ackHeader } from './packets.ts';
import type { Totals } from './totals.ts';

export interface LatencyRecorder {
  histogram: Histogram;
  epoch: bigint;
  /** Only messages sent inside [windowStartNs, windowEndNs) (ns since epoch) are recorded. */
  windowStartNs: number;
  windowEndNs: number;
}

export interface SubscriberConfig {
  socket: net.Socket;
  protocol: ProtocolVersion;
  totals: Totals;
  /** Set when publishers stamp payloads; read when the run starts. */
  latency: () => LatencyRecorder | null;
  onError: (msg: string) => void;
}

const PUBACK_H = ackHeader(4);
const PUBREC_H = ackHeader(5);
const PUBCOMP_H = ackHeader(7);

export class Subscriber {
  private c: SubscriberConfig;
  private scanner: FrameScanner;
  /** Acks owed for the current chunk: header byte and packet id, flattened pairs. */
  private acks: number[] = [];
  private nowNs = 0;
  private rec: LatencyRecorder | null = null;

  constructor(c: SubscriberConfig) {
    this.c = c;
    this.scanner = new FrameScanner((type, flags, buf, start) => {
      if (type === PUBLISH) this.onPublish(flags, buf, start);
      else if (type === PUBREL) this.acks.push(PUBCOMP_H, (buf[start]! << 8) | buf[start + 1]!);
    });
    c.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    c.socket.resume();
  }

  private onData(chunk: Buffer): void {
    this.rec = this.c.latency();
    // One clock read per chunk: every message in it reached the application at the same time.
    if (this.rec) this.nowNs = Number(process.hrtime.bigint() - this.rec.epoch);
    try {
      this.scanner.push(chunk);
    } catch (err) {
      this.c.onError((err as Error).message);
      this.c.socket.destroy();
      return;
    }
    const n = this.acks.length;
    if (n > 0) {
      const out = Buffer.allocUnsafe(n * 2);
      for (let i = 0; i < n; i += 2) {
        const at = i * 2;
        out[at] = this.acks[i]!;
        out[at + 1] = 2;
        out.writeUInt16BE(this.acks[i + 1]!, at + 2);
      }
      this.acks.length = 0;
      this.c.socket.write(out);
    }
  }

  private onPublish(flags: number, buf: Buffer, start: number): void {
    this.c.totals.delivered++;
    const qos = (flags >> 1) & 3;
    const topicLen = (buf[start]! << 8) | buf[start + 1]!;
    let p = start + 2 + topicLen;
    if (qos > 0) {
      const id = (buf[p]! << 8) | buf[p + 1]!;
      this.acks.push(qos === 1 ? PUBACK_H : PUBREC_H, id);
      p += 2;
    }
    const rec = this.rec;
    if (rec === null) return;
    if (this.c.protocol === 5) {
      const [propsLen, used] = readVarint(buf, p);
      p += used + propsLen;
    }
    const sentNs = buf.readDoubleBE(p);
    if (sentNs >= rec.windowStartNs && sentNs < rec.windowEndNs) {
      rec.histogram.recordValue(Math.max(1, Math.round((this.nowNs - sentNs) / 1000)));
    }
  }
}
