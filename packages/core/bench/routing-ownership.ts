// Measures both sides of the routing-state trade-off (docs/architecture.md):
//  replica: each worker matches topics in its own trie (publish: no hop; subscribe: broadcast + acks);
//  owner:   one thread owns the trie; a publishing worker asks it per batch (publish: a round trip).
// Usage: pnpm exec node packages/core/bench/routing-ownership.ts [messages=200000] [filters=10000]
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { TopicTrie } from '@starling/router';

const MESSAGES = Number(process.argv[2] ?? 200_000);
const FILTERS = Number(process.argv[3] ?? 10_000);
const BATCH = 256;

function buildTrie(): TopicTrie<number> {
  const trie = new TopicTrie<number>();
  for (let i = 0; i < FILTERS; i++) trie.add(i % 10 === 0 ? `site/${i % 100}/+/temp` : `site/${i % 100}/dev${i}/temp`, i);
  return trie;
}
const topics = Array.from({ length: 1000 }, (_, i) => `site/${i % 100}/dev${i * 7}/temp`);

if (!isMainThread) {
  const trie = buildTrie();
  parentPort!.on('message', (msg: { op: string; topics?: string[]; filter?: string }) => {
    if (msg.op === 'match') {
      const out: number[] = [];
      for (const t of msg.topics!) {
        let n = 0;
        trie.match(t, () => n++);
        out.push(n);
      }
      parentPort!.postMessage(out);
    } else if (msg.op === 'add') {
      trie.add(msg.filter!, -1);
      parentPort!.postMessage('ack');
    }
  });
} else {
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const trie = buildTrie();
  const owner = new Worker(new URL(import.meta.url), { workerData: {} });
  const ask = <T>(msg: unknown) => new Promise<T>((r) => { owner.once('message', r); owner.postMessage(msg); });
  await ask({ op: 'add', filter: 'warmup' });

  const replicaRuns: number[] = [];
  const ownerRuns: number[] = [];
  for (let round = 0; round < 5; round++) {
    let t = performance.now();
    let matched = 0;
    for (let i = 0; i < MESSAGES; i++) trie.match(topics[i % topics.length]!, () => matched++);
    replicaRuns.push(MESSAGES / ((performance.now() - t) / 1000));

    t = performance.now();
    for (let i = 0; i < MESSAGES; i += BATCH) {
      const batch = [];
      for (let j = 0; j < BATCH; j++) batch.push(topics[(i + j) % topics.length]!);
      await ask<number[]>({ op: 'match', topics: batch });
    }
    ownerRuns.push(MESSAGES / ((performance.now() - t) / 1000));
  }
  // Subscribe side: a route change acknowledged by one peer (the replica's cost per peer).
  const subLat: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t = performance.now();
    await ask({ op: 'add', filter: `new/${i}` });
    subLat.push((performance.now() - t) * 1000);
  }
  console.log(JSON.stringify({
    filters: FILTERS,
    publishMatchPerSec: { replica: Math.round(median(replicaRuns)), ownerBatched256: Math.round(median(ownerRuns)) },
    subscribeAckRoundTripMicros: { p50: Math.round(median(subLat)) },
  }));
  await owner.terminate();
}
