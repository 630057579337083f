import { MessageChannel, Worker } from 'node:worker_threads';
import type { Socket } from 'node:net';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import type { FromWorker, HubCommand, ToWorker, WorkerData } from './thread-messages.ts';

const WORKER_ENTRY = new URL('../../worker/src/worker-entry.ts', import.meta.url);

export interface WorkerHandle {
  readonly id: number;
  readonly worker: Worker;
  connections: number;
  ready: boolean;
}

export interface PoolEvents {
  message(workerId: number, msg: FromWorker): void;
  /** A worker died unexpectedly; its replacement is already starting. */
  crashed(workerId: number, connIds: number[]): void;
  /** A new worker joined the mesh: the hub sends it its routes. */
  joined(workerId: number): void;
}

/**
 * Session workers (worker_threads): sockets are handed to the one holding the fewest connections.
 * Piscina's task model (a task resolves, a worker idles) fits the CPU-bound offload, not long-lived
 * connection owners that talk to each other directly over MessagePorts (docs/architecture.md).
 */
export class WorkerPool {
  readonly workers = new Map<number, WorkerHandle>();
  private nextWorkerId = 1;
  private nextConnId = 1;
  private nextCmdId = 1;
  private readonly connOwner = new Map<number, number>();
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private stopping = false;
  private readyWaiters: Array<() => void> = [];
  /** Set while start() waits: a worker that dies before it is ready fails start-up instead of looping. */
  private failStart: ((err: Error) => void) | null = null;
  /** Crash-loop guard: consecutive crashes of workers that never became ready delay the next spawn. */
  private respawnDelayMs = 0;
  restarts = 0;

  private readonly config: Config;
  private readonly nodeId: string;
  private readonly log: Logger;
  private readonly events: PoolEvents;

  constructor(config: Config, nodeId: string, log: Logger, events: PoolEvents) {
    this.config = config;
    this.nodeId = nodeId;
    this.log = log;
    this.events = events;
  }

  start(): Promise<void> {
    const failed = new Promise<never>((_, reject) => (this.failStart = reject));
    for (let i = 0; i < this.config.workers; i++) this.spawn();
    return Promise.race([this.whenAllReady(), failed]).finally(() => (this.failStart = null));
  }

  whenAllReady(): Promise<void> {
    if ([...this.workers.values()].every((w) => w.ready)) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  private spawn(): WorkerHandle {
    const id = this.nextWorkerId++;
    const peers = [...this.workers.keys()];
    const data: WorkerData = { workerId: id, nodeId: this.nodeId, config: this.config, peers };
    const worker = new Worker(WORKER_ENTRY, { workerData: data, name: `starling-worker-${id}` });
    const handle: WorkerHandle = { id, worker, connections: 0, ready: false };
    this.workers.set(id, handle);
    for (const peer of this.workers.values()) {
      if (peer.id === id) continue;
      const { port1, port2 } = new MessageChannel();
      peer.worker.postMessage({ t: 'peer', workerId: id, port: port1 } satisfies ToWorker, [port1]);
      worker.postMessage({ t: 'peer', workerId: peer.id, port: port2 } satisfies ToWorker, [port2]);
    }
    worker.on('message', (msg: FromWorker) => this.onMessage(handle, msg));
    worker.on('error', (err) => this.log.error({ worker: id, err }, 'worker crashed'));
    worker.on('exit', (code) => this.onExit(handle, code));
    this.events.joined(id);
    return handle;
  }

  private onMessage(handle: WorkerHandle, msg: FromWorker): void {
    if (msg.t === 'ready') {
      handle.ready = true;
      if ([...this.workers.values()].every((w) => w.ready)) {
        for (const r of this.readyWaiters.splice(0)) r();
      }
      return;
    }
    if (msg.t === 'res' && this.waiting.has(msg.id)) {
      const w = this.waiting.get(msg.id)!;
      this.waiting.delete(msg.id);
      if (msg.error !== undefined) w.reject(new Error(msg.error));
      else w.resolve(msg.value);
      return;
    }
    if (msg.t === 'conn-end') {
      if (this.connOwner.delete(msg.connId)) handle.connections--;
    }
    this.events.message(handle.id, msg);
  }

  private onExit(handle: WorkerHandle, code: number): void {
    this.workers.delete(handle.id);
    for (const other of this.workers.values()) other.worker.postMessage({ t: 'peer-gone', workerId: handle.id } satisfies ToWorker);
    const connIds: number[] = [];
    for (const [connId, owner] of this.connOwner) if (owner === handle.id) connIds.push(connId);
    for (const c of connIds) this.connOwner.delete(c);
    if (this.stopping) return;
    if (this.failStart) {
      this.failStart(new Error(`worker ${handle.id} exited with code ${code} before it was ready`));
      return;
    }
    this.restarts++;
    // A worker that dies before ready will likely die again (bad code, bad config): back off, don't spin.
    this.respawnDelayMs = handle.ready ? 0 : Math.min(Math.max(this.respawnDelayMs * 2, 100), 5000);
    this.log.error({ worker: handle.id, code, connections: connIds.length, respawnInMs: this.respawnDelayMs }, 'worker exited; starting a replacement');
    if (this.respawnDelayMs === 0) this.spawn();
    else setTimeout(() => !this.stopping && this.spawn(), this.respawnDelayMs).unref();
    this.events.crashed(handle.id, connIds);
  }

  /** Hands a paused socket to the least-loaded ready worker; the main thread never reads it. */
  assign(socket: Socket, listener?: import('./transports/config.ts').ListenerName): boolean {
    let best: WorkerHandle | null = null;
    for (const w of this.workers.values()) if (w.ready && (!best || w.connections < best.connections)) best = w;
    if (!best) return false;
    const connId = this.nextConnId++;
    best.connections++;
    this.connOwner.set(connId, best.id);
    best.worker.postMessage({ t: 'socket', connId, socket, acceptedAt: Date.now(), ...(listener ? { listener } : {}) } satisfies ToWorker, [socket as never]);
    return true;
  }

  send(workerId: number, msg: ToWorker): void {
    this.workers.get(workerId)?.worker.postMessage(msg);
  }

  command<T>(workerId: number, cmd: HubCommand, timeoutMs = this.config.timeouts.requestMs): Promise<T> {
    const handle = this.workers.get(workerId);
    if (!handle) return Promise.reject(new Error(`worker ${workerId} is gone`));
    const id = this.nextCmdId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`worker ${workerId} did not answer ${cmd.op}`));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      handle.worker.postMessage({ t: 'cmd', id, cmd } satisfies ToWorker);
    });
  }

  anyWorker(): number | null {
    for (const w of this.workers.values()) if (w.ready) return w.id;
    return null;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.workers.values()].map((w) => w.worker.terminate()));
  }
}
