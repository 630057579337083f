// Acknowledgements of route changes: a change counts as applied once every node that was alive when it
// was announced said so, or when the timeout passed (a node that died meanwhile never answers).

interface Pending {
  waiting: Set<string>;
  done(): void;
  timer: NodeJS.Timeout;
}

export class RouteAcks {
  private readonly pending = new Map<number, Pending>();
  private readonly timeoutMs: number;
  private readonly onTimeout: () => void;

  constructor(timeoutMs: number, onTimeout: () => void) {
    this.timeoutMs = timeoutMs;
    this.onTimeout = onTimeout;
  }

  /** Resolves once every node in `from` acknowledged seq (or the timeout passed). Register before
   *  sending: an acknowledgement may overtake the reply to the announcing command. */
  expect(seq: number, from: Iterable<string>): Promise<void> {
    const waiting = new Set(from);
    if (waiting.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.onTimeout();
        this.finish(seq);
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(seq, { waiting, done: resolve, timer });
    });
  }

  ack(seq: number, node: string): void {
    const p = this.pending.get(seq);
    if (!p) return;
    p.waiting.delete(node);
    if (p.waiting.size === 0) this.finish(seq);
  }

  /** Stops waiting for seq (resolving it). */
  finish(seq: number): void {
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    clearTimeout(p.timer);
    p.done();
  }

  /** A node left or died: it will not answer. */
  forget(node: string): void {
    for (const seq of [...this.pending.keys()]) this.ack(seq, node);
  }

  /** Stops waiting for nodes not in live. */
  retain(live: ReadonlySet<string>): void {
    const waitedOn = new Set<string>();
    for (const p of this.pending.values()) for (const n of p.waiting) waitedOn.add(n);
    for (const node of waitedOn) if (!live.has(node)) this.forget(node);
  }

  clear(): void {
    for (const seq of [...this.pending.keys()]) this.finish(seq);
  }
}
