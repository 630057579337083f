// Which worker a connection landed on, and steering the next connection to a chosen worker.
// The pool hands each socket to the ready worker with the fewest connections (ties: lowest id), so
// opening idle connections on the busier side decides where the next one lands.
import type { BrokerProcess, LogLine } from './broker.ts';
import { RawClient, uniqueId } from './clients.ts';
import { scrape } from './metrics.ts';

/** Open connections per worker id, from the `starling_connections{worker=...}` gauge. */
export async function connectionsPerWorker(broker: BrokerProcess): Promise<Map<number, number>> {
  const text = await scrape(broker.metricsPort);
  const out = new Map<number, number>();
  for (const line of text.split('\n')) {
    const m = /^starling_connections\{[^}]*worker="(\d+)"[^}]*\}\s+(\S+)/.exec(line);
    if (m) out.set(Number(m[1]), Number(m[2]));
  }
  return out;
}

/** The worker the pool would pick for the next socket. */
export function predictNext(counts: Map<number, number>): number {
  let best = -1;
  let bestCount = Infinity;
  for (const id of [...counts.keys()].sort((a, b) => a - b)) {
    const n = counts.get(id)!;
    if (n < bestCount) {
      best = id;
      bestCount = n;
    }
  }
  return best;
}

/**
 * Opens idle (connected, clean) raw connections until the pool's next pick satisfies `want`.
 * Returns them so the test can close them at the end. Bounded: throws after 16 tries.
 */
export async function steerNext(broker: BrokerProcess, want: (workerId: number) => boolean): Promise<RawClient[]> {
  const idle: RawClient[] = [];
  for (let i = 0; i < 16; i++) {
    const next = predictNext(await connectionsPerWorker(broker));
    if (want(next)) return idle;
    const c = await RawClient.connect(broker.port, 4);
    await c.handshake({ clientId: uniqueId('idle') });
    idle.push(c);
  }
  throw new Error('could not steer the next connection to the wanted worker');
}

/**
 * The worker of the next not-yet-seen 'connected' debug line of clientId (each worker's log lines
 * carry a `worker` field). `seen` remembers lines already attributed, for repeated connects of one id.
 */
export async function connectedWorker(broker: BrokerProcess, clientId: string, seen: Set<LogLine> = new Set()): Promise<number> {
  const line = await broker.waitForLog((l) => l.msg === 'connected' && l.clientId === clientId && !seen.has(l));
  seen.add(line);
  return line.worker as number;
}
