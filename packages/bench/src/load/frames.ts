// A minimal streaming MQTT frame splitter. The load generator only needs the packet type, flags
// and the byte range of each frame, so this avoids mqtt-packet's parser (which allocates an
// object per packet) on the hot receive path: at several hundred thousand messages per second
// that allocation alone would make the generator the bottleneck.

export const PUBLISH = 3;
export const PUBACK = 4;
export const PUBREC = 5;
export const PUBREL = 6;
export const PUBCOMP = 7;
export const SUBACK = 9;
export const CONNACK = 2;
export const PINGRESP = 13;
export const DISCONNECT = 14;

/**
 * Called once per complete frame. `start` is the first byte after the fixed header (the variable
 * header), `end` is one past the frame's last byte. `buf` is only valid during the call.
 */
export type FrameHandler = (type: number, flags: number, buf: Buffer, start: number, end: number) => void;

export class FrameScanner {
  private onFrame: FrameHandler;
  /** Bytes of an incomplete frame carried over from earlier chunks. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Total size of the incomplete frame once known (0 = header not complete yet). */
  private need = 0;

  constructor(onFrame: FrameHandler) {
    this.onFrame = onFrame;
  }

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      // Large frames arrive over many chunks: only concatenate once the whole frame is here.
      if (this.need > 0 && this.pendingBytes < this.need) return;
      buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
      this.need = 0;
    }
    const len = buf.length;
    let pos = 0;
    while (pos < len) {
      const b0 = buf[pos]!;
      let i = pos + 1;
      let rem = 0;
      let mul = 1;
      let complete = false;
      while (i < len) {
        const b = buf[i++]!;
        rem += (b & 127) * mul;
        if ((b & 128) === 0) {
          complete = true;
          break;
        }
        mul *= 128;
        if (mul > 2_097_152) throw new Error('malformed remaining length');
      }
      if (!complete) break;
      const end = i + rem;
      if (end > len) {
        this.need = end - pos;
        break;
      }
      this.onFrame(b0 >> 4, b0 & 15, buf, i, end);
      pos = end;
    }
    if (pos < len) {
      // Copy: the caller's chunk may be reused, and a slice would pin the whole chunk anyway.
      const rest = Buffer.from(buf.subarray(pos));
      this.pending.push(rest);
      this.pendingBytes = rest.length;
    } else {
      this.need = 0;
    }
  }
}

/** Reads an MQTT variable byte integer; returns [value, bytes used]. */
export function readVarint(buf: Buffer, pos: number): [number, number] {
  let value = 0;
  let mul = 1;
  for (let n = 0; n < 4; n++) {
    const b = buf[pos + n]!;
    value += (b & 127) * mul;
    if ((b & 128) === 0) return [value, n + 1];
    mul *= 128;
  }
  throw new Error('malformed variable byte integer');
}
