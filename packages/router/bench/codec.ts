// Compares the binary message encoding with JSON + base64 for delivery frames.
// Run: pnpm exec node packages/router/bench/codec.ts
import { decodeDeliveries, deliveryFrame, encodeDelivery, encodeMessage, fromJson, toJson } from '../src/redis-codec.ts';
import type { Message } from '../src/types.ts';

function message(size: number): Message {
  return { topic: 'sensors/building-1/floor-2/temp', payload: Buffer.alloc(size, 7), qos: 1, retain: false, origin: 'client-123', receivedAt: Date.now() };
}

function bench(label: string, batch: Message[], rounds: number): void {
  const binStart = process.hrtime.bigint();
  let bytesBin = 0;
  for (let r = 0; r < rounds; r++) {
    const parts: Buffer[] = [];
    for (const m of batch) parts.push(...encodeDelivery(encodeMessage(m), [], true));
    const frame = deliveryFrame(parts, batch.length);
    bytesBin = frame.length;
    let n = 0;
    decodeDeliveries(frame, () => n++);
  }
  const binNs = Number(process.hrtime.bigint() - binStart);
  const jsonStart = process.hrtime.bigint();
  let bytesJson = 0;
  for (let r = 0; r < rounds; r++) {
    const frame = Buffer.from(toJson(batch.map((m) => ({ m, g: [], n: true }))));
    bytesJson = frame.length;
    fromJson<unknown[]>(frame.toString());
  }
  const jsonNs = Number(process.hrtime.bigint() - jsonStart);
  const perMsg = (ns: number) => (ns / rounds / batch.length).toFixed(0);
  console.log(`${label}: binary ${perMsg(binNs)} ns/msg ${bytesBin} B/frame | json+base64 ${perMsg(jsonNs)} ns/msg ${bytesJson} B/frame`);
}

for (const size of [16, 256, 4096, 65536]) bench(`payload ${size} B, batch 64`, Array.from({ length: 64 }, () => message(size)), size > 10000 ? 50 : 2000);
