// Cross-node publish throughput through RedisRouter: node A publishes, node B receives.
// Run: pnpm exec node packages/router/bench/throughput.ts [messages] [payloadBytes]
import { RedisRouter } from '../src/redis-router.ts';
import type { Message } from '../src/types.ts';
import { RedisServer } from '../test/redis-server.ts';

const total = Number(process.argv[2] ?? 200_000);
const size = Number(process.argv[3] ?? 64);
const wave = 1000;

const server = await RedisServer.start();
let received = 0;
let allReceived: () => void = () => {};
const done = new Promise<void>((resolve) => (allReceived = resolve));
const noop = { deliver() {}, takeover() {} };
const a = new RedisRouter({ nodeId: 'A', url: server.url });
const b = new RedisRouter({ nodeId: 'B', url: server.url });
await a.start(noop);
await b.start({
  ...noop,
  deliver() {
    if (++received === total) allReceived();
  },
});
await b.addRoute('bench/#');
const payload = new Uint8Array(size).fill(42);
const t0 = performance.now();
for (let sent = 0; sent < total; sent += wave) {
  const batch: Promise<void>[] = [];
  for (let i = 0; i < wave; i++) {
    const m: Message = { topic: `bench/${i & 63}`, payload, qos: 1, retain: false, origin: 'bench', receivedAt: Date.now() };
    batch.push(a.publish(m));
  }
  await Promise.all(batch);
}
const published = performance.now() - t0;
await done;
const elapsed = performance.now() - t0;
console.log(`${total} messages of ${size} B: published in ${published.toFixed(0)} ms, received in ${elapsed.toFixed(0)} ms = ${Math.round(total / (elapsed / 1000))} msg/s; batches ${a.status.batchesOut}`);
await a.close();
await b.close();
await server.kill();
