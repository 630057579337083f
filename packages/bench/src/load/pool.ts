// Main-thread side of the load workers: starts them, routes their messages, reads the shared
// counters and makes sure they are gone at the end.

import { Worker } from 'node:worker_threads';
import type { FromWorker, ToWorker, WorkerData } from './protocol.ts';
import { FIELDS, sumTotals, threadCpu, type Totals } from './totals.ts';

const WORKER_URL = new URL('./worker.ts', import.meta.url);

export class WorkerPool {
  readonly size: number;
  /** hrtime origin shared with the workers. */
  readonly epoch: bigint;
  private workers: Worker[] = [];
  private shared: Float64Array;
  private inbox: FromWorker[][] = [];
  private waiters: Array<(() => void) | null> = [];
  private failure: Error | null = null;

  constructor(size: number) {
    this.size = size;
    this.epoch = process.hrtime.bigint();
    const sab = new SharedArrayBuffer(size * FIELDS * 8);
    this.shared = new Float64Array(sab);
    for (let slot = 0; slot < size; slot++) {
      const wd: WorkerData = { shared: sab, slot, epoch: this.epoch.toString() };
      const w = new Worker(WORKER_URL, { workerData: wd });
      this.inbox.push([]);
      this.waiters.push(null);
      w.on('message', (m: FromWorker) => {
        if (m.type === 'fatal') this.fail(new Error(`worker ${slot}: ${m.error}`));
        else this.inbox[slot]!.push(m);
        this.wake(slot);
      });
      w.on('error', (err: Error) => this.fail(new Error(`worker ${slot} crashed: ${err.stack ?? err.message}`)));
      this.workers.push(w);
    }
  }

  /** Nanoseconds since the shared epoch. */
  nowNs(): number {
    return Number(process.hrtime.bigint() - this.epoch);
  }

  post(slot: number, msg: ToWorker): void {
    this.workers[slot]!.postMessage(msg);
  }

  broadcast(msg: ToWorker): void {
    for (let i = 0; i < this.size; i++) this.post(i, msg);
  }

  totals(): Totals {
    return sumTotals(this.shared, this.size);
  }

  /** CPU µs used so far by each worker thread. */
  threadCpu(): number[] {
    return threadCpu(this.shared, this.size);
  }

  /** Waits for one message of `type` from each of `slots` (default all workers). */
  async collect<T extends FromWorker['type']>(
    type: T,
    timeoutMs: number,
    slots: number[] = [...Array(this.size).keys()],
  ): Promise<Array<Extract<FromWorker, { type: T }>>> {
    const deadline = Date.now() + timeoutMs;
    const out: Array<Extract<FromWorker, { type: T }>> = [];
    for (const slot of slots) {
      for (;;) {
        if (this.failure) throw this.failure;
        const box = this.inbox[slot]!;
        const i = box.findIndex((m) => m.type === type);
        if (i >= 0) {
          out.push(box.splice(i, 1)[0] as Extract<FromWorker, { type: T }>);
          break;
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out waiting for '${type}' from worker ${slot}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          this.waiters[slot] = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    }
    return out;
  }

  async terminate(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private wake(slot: number): void {
    const w = this.waiters[slot];
    this.waiters[slot] = null;
    w?.();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (let i = 0; i < this.size; i++) this.wake(i);
  }
}
