// Who publishes where and who subscribes to what, and which worker thread owns each client.

import type { PubSpec, SubSpec } from '../load/protocol.ts';
import type { Pattern, RunOptions } from '../types.ts';

export interface Topology {
  pattern: Pattern;
  pubs: PubSpec[];
  subs: SubSpec[];
  /** How many subscribers receive each published message. */
  fanout: number;
}

export function patternOf(o: RunOptions): Pattern {
  if (o.scenario === 'fan-in' || o.scenario === 'fan-out' || o.scenario === 'pairs') return o.scenario;
  return o.pattern;
}

export function buildTopology(o: RunOptions): Topology {
  const pattern = patternOf(o);
  const root = `bench/${o.runTag}`;
  // Pairs need one subscriber per publisher whatever --subscribers says.
  const nPub = o.publishers;
  const nSub = pattern === 'pairs' ? o.publishers : o.subscribers;
  const quota = Math.max(1, Math.floor(o.maxMessages / nPub));
  const rate = o.rate > 0 ? o.rate / nPub : 0;
  const pubs: PubSpec[] = [];
  const subs: SubSpec[] = [];
  for (let i = 0; i < nPub; i++) {
    const topic = pattern === 'fan-in' ? `${root}/in/${i}` : pattern === 'fan-out' ? `${root}/out` : `${root}/p/${i}`;
    pubs.push({ clientId: `sb${o.runTag}p${i}`, endpoint: o.pubUrl, topic, quota, rate });
  }
  for (let i = 0; i < nSub; i++) {
    const filter = pattern === 'fan-in' ? `${root}/in/#` : pattern === 'fan-out' ? `${root}/out` : `${root}/p/${i}`;
    subs.push({ clientId: `sb${o.runTag}s${i}`, endpoint: o.subUrl, filter });
  }
  return { pattern, pubs, subs, fanout: pattern === 'pairs' ? 1 : nSub };
}

/**
 * Subscribers and publishers go to separate threads when there are at least two: receiving and
 * parsing is the expensive side, and this keeps a busy publisher from starving the counting.
 */
export function assignWorkers<P, S>(pubs: P[], subs: S[], workers: number): Array<{ pubs: P[]; subs: S[] }> {
  const out = Array.from({ length: workers }, () => ({ pubs: [] as P[], subs: [] as S[] }));
  const subThreads = workers === 1 ? 1 : Math.max(1, Math.min(subs.length, Math.floor(workers / 2)));
  const pubFirst = workers === 1 ? 0 : subThreads;
  const pubThreads = workers - pubFirst;
  subs.forEach((s, i) => out[i % subThreads]!.subs.push(s));
  pubs.forEach((p, i) => out[pubFirst + (i % pubThreads)]!.pubs.push(p));
  return out;
}
