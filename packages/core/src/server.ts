import net, { type AddressInfo } from 'node:net';
import type http from 'node:http';
import type { Router } from '@starling/router';
import { registerClusterMetrics } from './cluster-metrics.ts';
import { createRouter } from './router-factory.ts';
import type { Config } from './config.ts';
import { HubMetrics } from './hub-metrics.ts';
import { Hub } from './hub.ts';
import { startHttpServer } from './http-server.ts';
import type { Logger } from './logger.ts';
import { WorkerPool } from './worker-pool.ts';
import type { MetricJSON } from './metric-json.ts';
import { SysTopics } from './sys-topics.ts';
import { Admission } from './auth/admission.ts';
import { interceptSecurityRequest, SecurityService } from './auth/service.ts';
import { TransportListeners } from './transports/listeners.ts';

/** A running node: MQTT listener, session workers, hub, HTTP for metrics and probes. */
export class Broker {
  readonly config: Config;
  readonly log: Logger;
  private readonly router: Router;
  private readonly hub: Hub;
  private readonly pool: WorkerPool;
  private readonly metrics: HubMetrics;
  private readonly sys: SysTopics;
  readonly security: SecurityService;
  /** TLS and WebSocket listeners (transports/). */
  readonly transports = new TransportListeners();
  private readonly admission: Admission;
  private listener: net.Server | null = null;
  private http: http.Server | null = null;
  private accepting = false;
  private stopping: Promise<void> | null = null;

  constructor(config: Config, log: Logger, router?: Router) {
    this.config = config;
    this.log = log;
    this.router = router ?? createRouter(config, log.child({ module: 'router' }));
    this.metrics = new HubMetrics({
      workerRestarts: () => this.pool.restarts,
      // Redis away: report 'unknown' rather than failing the whole scrape.
      retained: () => this.router.retainedCount().catch(() => Number.NaN),
      ready: () => this.accepting,
      workers: () => this.pool.workers.size,
    }, config.metrics.enabled);
    registerClusterMetrics(this.metrics.registry, this.router);
    this.hub = new Hub({ config, router: this.router, log: log.child({ module: 'hub' }), metrics: this.metrics });
    this.pool = new WorkerPool(config, config.nodeId, log.child({ module: 'pool' }), {
      message: (workerId, msg) => {
        if (!interceptSecurityRequest(this.security, workerId, msg, (w, res) => this.pool.send(w, res))) this.hub.onWorkerMessage(workerId, msg);
      },
      crashed: (workerId, connIds) => {
        this.metrics.workerGone(workerId);
        void this.hub.workerCrashed(workerId, connIds).catch((err: Error) => log.error({ err: err.message }, 'crash recovery failed'));
      },
      joined: (workerId) => this.hub.workerJoined(workerId),
    });
    this.hub.pool = this.pool;
    this.security = new SecurityService(config.auth, log.child({ module: 'auth' }), this.metrics.registry);
    this.admission = new Admission(config.limits, () => {
      let n = 0;
      for (const w of this.pool.workers.values()) n += w.connections;
      return n;
    }, this.metrics.connectionsRefused);
    this.sys = new SysTopics({
      intervalMs: config.sys.intervalMs,
      source: { collect: () => this.collect(false), publish: (m) => this.hub.publishLocal(m) },
      log: log.child({ module: 'sys' }),
    });
  }

  get mqttPort(): number {
    return (this.listener?.address() as AddressInfo | null)?.port ?? 0;
  }

  get metricsPort(): number {
    return (this.http?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    const cfg = this.config;
    // First, so probes answer (503 on /readyz) while the rest starts.
    this.http = await startHttpServer(
      cfg.metrics.host,
      cfg.metrics.port,
      {
        metrics: cfg.metrics.enabled ? () => this.scrape() : null,
        healthy: () => this.health(),
        ready: () => this.accepting,
      },
      this.log.child({ module: 'http' }),
    );
    await this.security.start();
    await this.hub.start();
    await this.pool.start();
    this.sys.start();
    this.listener = net.createServer({ pauseOnConnect: true }, (socket) => {
      if (this.accepting && !this.admission.admit(socket)) return;
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
    await this.transports.start(cfg, (socket, listener) => {
      if (this.accepting && !this.admission.admit(socket)) return;
      if (!this.accepting || !this.pool.assign(socket, listener)) {
        this.metrics.connectionsRefused.inc({ reason: this.accepting ? 'no_worker' : 'shutting_down' });
        socket.destroy();
      }
    }, this.log);
    // SIGHUP: renewed certificates, re-read by every worker (the password file is the security service's).
    this.security.hupListeners.push(() => {
      for (const id of this.pool.workers.keys()) this.pool.send(id, { t: 'tls-reload' });
    });
    this.accepting = true;
    this.log.info({ port: this.mqttPort, metricsPort: this.metricsPort, workers: cfg.workers, nodeId: cfg.nodeId }, 'starling listening');
  }

  /** The node's metrics: main thread and every worker (one that does not answer: its last counters). */
  private async registry(eventLoop: boolean): Promise<Awaited<ReturnType<HubMetrics['collect']>>> {
    const ids = [...this.pool.workers.keys()];
    const answers = await Promise.all(
      ids.map((id) => this.pool.command<MetricJSON[]>(id, { op: 'metrics', eventLoop }, 2000).catch(() => null)),
    );
    return this.metrics.collect(new Map(ids.map((id, i) => [id, answers[i] ?? null])));
  }

  private async scrape(): Promise<{ body: string; contentType: string }> {
    const merged = await this.registry(true);
    return { body: await merged.metrics(), contentType: merged.contentType };
  }

  private async collect(eventLoop: boolean): Promise<MetricJSON[]> {
    return (await (await this.registry(eventLoop)).getMetricsAsJSON()) as unknown as MetricJSON[];
  }

  /** Alive: every worker's event loop answers a ping within a second. */
  private async health(): Promise<{ ok: boolean; detail: string }> {
    const ids = [...this.pool.workers.keys()];
    if (ids.length === 0) return { ok: false, detail: 'no workers' };
    const answers = await Promise.all(ids.map((id) => this.pool.command(id, { op: 'ping' }, 1000).then(() => true, () => false)));
    const stuck = ids.filter((_, i) => !answers[i]);
    return stuck.length === 0 ? { ok: true, detail: `${ids.length} workers` } : { ok: false, detail: `workers not answering: ${stuck.join(', ')}` };
  }

  /** Stops accepting, tells v5 clients 0x8B Server shutting down, and closes within timeouts.shutdownMs. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.accepting = false;
      this.listener?.close();
      this.transports.close();
      this.sys.stop();
      if (this.config.timeouts.drainMs > 0) {
        // /readyz answers 503 from here: a load balancer takes the node out before clients are told to go.
        this.log.info({ drainMs: this.config.timeouts.drainMs }, 'draining');
        await new Promise((r) => setTimeout(r, this.config.timeouts.drainMs));
      }
      const ids = [...this.pool.workers.keys()];
      await Promise.race([
        Promise.all(ids.map((id) => this.pool.command(id, { op: 'shutdown', reasonCode: 0x8b }).catch(() => undefined))),
        new Promise((r) => setTimeout(r, this.config.timeouts.shutdownMs).unref()),
      ]);
      this.hub.stop();
      await this.security.stop();
      await this.pool.stop();
      await this.router.close().catch(() => undefined);
      await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
      this.log.info('starling stopped');
    })();
    return this.stopping;
  }
}
