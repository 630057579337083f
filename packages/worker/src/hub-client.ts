import type { MessagePort } from 'node:worker_threads';
import type { FromWorker, HubRequest } from '@starling/core/thread-messages.ts';

/** Requests from a worker to the hub (main thread), answered by id. */
export class HubClient {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly port: MessagePort;
  private readonly timeoutMs: number;

  constructor(port: MessagePort, timeoutMs: number) {
    this.port = port;
    this.timeoutMs = timeoutMs;
  }

  request<T>(req: HubRequest): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`hub request ${req.op} timed out after ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.port.postMessage({ t: 'req', id, req });
    });
  }

  /** A request whose answer nobody waits for (its failure is the hub's to log). */
  tell(req: HubRequest): void {
    this.port.postMessage({ t: 'req', id: 0, req });
  }

  post(msg: FromWorker): void {
    this.port.postMessage(msg);
  }

  settle(id: number, value: unknown, error: string | undefined): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    clearTimeout(w.timer);
    if (error !== undefined) w.reject(new Error(error));
    else w.resolve(value);
  }
}
