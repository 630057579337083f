import net, { type AddressInfo } from 'node:net';
import type http from 'node:http';
import { MemoryRouter, type Router } from '@starling/router';
import type { Config } from './config.ts';
import { HubMetrics } from './hub-metrics.ts';
import { Hub } from './hub.ts';
import { startHttpServer } from './http-server.ts';
import type { Logger } from './logger.ts';
import { WorkerPool } from './worker-pool.ts';

/** A running node: MQTT listener, session workers, hub, HTTP for metrics and probes. */
export class Broker {
  readonly config: Config;
  readonly log: Logger;
  private readonly router: Router;
  private readonly hub: Hub;
  private readonly pool: WorkerPool;
  private readonly metrics: HubMetrics;
  private listener: net.Server | null = null;
  private http: http.Server | null = null;
  private accepting = false;
  private stopping: Promise<void> | null = null;

  constructor(config: Config, log: Logger, router?: Router) {
    this.config = config;
    this.log = log;
    this.router = router ?? new MemoryRouter({ nodeId: config.nodeId });
    this.metrics = new HubMetrics({
      workerRestarts: () => this.pool.restarts,
      retained: () => this.router.retainedCount(),
      ready: () => this.accepting,
      workers: () => this.pool.workers.size,
    });
    this.hub = new Hub({ config, router: this.router, log: log.child({ module: 'hub' }), metrics: this.metrics });
    this.pool = new WorkerPool(config, config.nodeId, log.child({ module: 'pool' }), {
      message: (workerId, msg) => this.hub.onWorkerMessage(workerId, msg),
      crashed: (workerId, connIds) => void this.hub.workerCrashed(workerId, connIds).catch((err: Error) => log.error({ err: err.message }, 'crash recovery failed')),
      joined: (workerId) => this.hub.workerJoined(workerId),
    });
    this.hub.pool = this.pool;
  }

  get mqttPort(): number {
    return (this.listener?.address() as AddressInfo | null)?.port ?? 0;
  }

  get metricsPort(): number {
    return (this.http?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    const cfg = this.config;
    if (cfg.metrics.enabled) {
      this.http = await startHttpServer(
        cfg.metrics.host,
        cfg.metrics.port,
        {
          metrics: () => this.scrape(),
          healthy: () => this.stopping === null && this.pool.workers.size > 0,
          ready: () => this.accepting,
        },
        this.log.child({ module: 'http' }),
      );
    }
    await this.hub.start();
    await this.pool.start();
    this.listener = net.createServer({ pauseOnConnect: true }, (socket) => {
      if (!this.accepting || !this.pool.assign(socket)) {
        this.metrics.connectionsRefused.inc({ reason: this.accepting ? 'no_worker' : 'shutting_down' });
        socket.destroy();
      }
    });
    this.listener.on('error', (err) => this.log.error({ err }, 'listener error'));
    await new Promise<void>((resolve, reject) => {
      this.listener!.once('error', reject);
      this.listener!.listen(cfg.port, cfg.host, () => resolve());
    });
    this.accepting = true;
    this.log.info({ port: this.mqttPort, metricsPort: this.metricsPort, workers: cfg.workers, nodeId: cfg.nodeId }, 'starling listening');
  }

  private async scrape(): Promise<{ body: string; contentType: string }> {
    const ids = [...this.pool.workers.keys()];
    const parts = await Promise.all(ids.map((id) => this.pool.command<never[]>(id, { op: 'metrics' }, 2000).catch(() => [] as never[])));
    return this.metrics.scrape(parts);
  }

  /** Stops accepting, tells v5 clients 0x8B Server shutting down, and closes within timeouts.shutdownMs. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.accepting = false;
      this.listener?.close();
      const ids = [...this.pool.workers.keys()];
      await Promise.race([
        Promise.all(ids.map((id) => this.pool.command(id, { op: 'shutdown', reasonCode: 0x8b }).catch(() => undefined))),
        new Promise((r) => setTimeout(r, this.config.timeouts.shutdownMs).unref()),
      ]);
      this.hub.stop();
      await this.pool.stop();
      await this.router.close().catch(() => undefined);
      await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
      this.log.info('starling stopped');
    })();
    return this.stopping;
  }
}
