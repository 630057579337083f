import { AggregatorRegistry, Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** Metrics owned by the main thread; merged with every worker's registry into one scrape. */
export class HubMetrics {
  readonly registry = new Registry();
  readonly willsPublished: Counter<'cause'>;
  readonly connectionsRefused: Counter<'reason'>;
  /** Same series as the workers' starling_disconnects_total (summed at scrape): ends the main thread
   *  classifies itself, i.e. the connections of a crashed worker (reason worker_crash). */
  readonly disconnects: Counter<'reason' | 'initiator'>;

  constructor(read: { workerRestarts: () => number; retained: () => Promise<number>; ready: () => boolean; workers: () => number }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'starling_process_' });
    this.willsPublished = new Counter({ name: 'starling_wills_published_total', help: 'Will messages published, by cause.', labelNames: ['cause'], registers });
    for (const cause of ['connection_lost', 'worker_crash', 'node_down']) this.willsPublished.inc({ cause }, 0);
    this.disconnects = new Counter({
      name: 'starling_disconnects_total',
      help: 'Connection ends by reason and initiator (client, server, network).',
      labelNames: ['reason', 'initiator'],
      registers,
    });
    this.connectionsRefused = new Counter({
      name: 'starling_connections_refused_total',
      help: 'Sockets refused before MQTT (no worker ready, connection limit, shutting down).',
      labelNames: ['reason'],
      registers,
    });
    new Counter({
      name: 'starling_worker_restarts_total',
      help: 'Session workers restarted after a crash.',
      registers,
      collect() {
        this.reset();
        this.inc(read.workerRestarts());
      },
    });
    new Gauge({
      name: 'starling_retained_messages',
      help: 'Retained messages stored.',
      registers,
      async collect() {
        this.set(await read.retained());
      },
    });
    new Gauge({ name: 'starling_ready', help: '1 while the node accepts connections.', registers, collect() { this.set(read.ready() ? 1 : 0); } });
    new Gauge({ name: 'starling_workers', help: 'Session worker threads running.', registers, collect() { this.set(read.workers()); } });
  }

  /** One scrape: this registry plus every worker's, summed where labels agree. */
  async scrape(workerJson: unknown[][]): Promise<{ body: string; contentType: string }> {
    const own = await this.registry.getMetricsAsJSON();
    const merged = AggregatorRegistry.aggregate([own, ...workerJson] as never);
    return { body: await merged.metrics(), contentType: merged.contentType };
  }
}
