// Records what an `mqtt` client receives and lets a test await a "fence": a message published after the
// ones under test, on a path that preserves order, so "nothing else arrived" is proved without sleeping.
// The `mqtt` client emits a QoS 2 message only when its PUBREL arrives, so a fence that must follow QoS 2
// messages is itself delivered at QoS 2 (published and subscribed at 2).
import type { MqttClient } from 'mqtt';
import type { Received } from './clients.ts';

export interface Recorder {
  /** Every message received since the recorder was attached, in arrival order. */
  readonly got: Received[];
  /**
   * Resolves with the messages received after the previous until() (or the start) and before the first
   * one matching pred; that one is consumed too. Rejects after timeoutMs.
   */
  until(pred: (r: Received) => boolean, timeoutMs?: number): Promise<Received[]>;
  /** The next message after the previous until()/next() (awaited), consumed. */
  next(timeoutMs?: number): Promise<Received>;
}

export function record(client: MqttClient): Recorder {
  const got: Received[] = [];
  let cursor = 0;
  let waiter: { pred: (r: Received) => boolean; resolve: (idx: number) => void } | null = null;
  client.on('message', (topic, payload, packet) => {
    got.push({ topic, payload, packet: packet as Received['packet'] });
    if (waiter && waiter.pred(got.at(-1)!)) {
      const w = waiter;
      waiter = null;
      w.resolve(got.length - 1);
    }
  });
  /** Index of the first message at or after the cursor matching pred (awaited); moves the cursor past it. */
  async function take(pred: (r: Received) => boolean, timeoutMs: number): Promise<{ from: number; idx: number }> {
    const from = cursor;
    let idx = got.findIndex((r, i) => i >= from && pred(r));
    if (idx < 0) {
      if (waiter) throw new Error('one until()/next() at a time');
      idx = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null;
          reject(new Error(`expected message not received within ${timeoutMs} ms; got ${got.slice(from).map((r) => r.topic).join(', ') || 'nothing'}`));
        }, timeoutMs);
        waiter = {
          pred,
          resolve: (i) => {
            clearTimeout(timer);
            resolve(i);
          },
        };
      });
    }
    cursor = idx + 1;
    return { from, idx };
  }
  return {
    got,
    async until(pred, timeoutMs = 10_000) {
      const { from, idx } = await take(pred, timeoutMs);
      return got.slice(from, idx);
    },
    async next(timeoutMs = 10_000) {
      const { idx } = await take(() => true, timeoutMs);
      return got[idx]!;
    },
  };
}

/** Shorthand for a fence on one topic. */
export const onTopic = (topic: string) => (r: Received) => r.topic === topic;
