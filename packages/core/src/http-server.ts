import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger.ts';

export interface HttpHandlers {
  /** null when metrics are disabled: /metrics answers 404. */
  metrics: (() => Promise<{ body: string; contentType: string }>) | null;
  /** Process alive and every worker answering; `detail` goes into the body. */
  healthy(): Promise<{ ok: boolean; detail: string }>;
  /** Listener accepting; false while starting and draining. */
  ready(): boolean;
}

/** /metrics, /healthz and /readyz on their own port, apart from MQTT. Probes never hit the workers' hot path. */
export function startHttpServer(host: string, port: number, h: HttpHandlers, log: Logger): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics' && h.metrics) {
      h.metrics().then(
        ({ body, contentType }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(body);
        },
        (err: Error) => {
          log.warn({ err: err.message }, 'metrics scrape failed');
          res.writeHead(500).end(err.message);
        },
      );
      return;
    }
    if (path === '/healthz') {
      h.healthy().then(
        ({ ok, detail }) => res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(`${ok ? 'ok' : 'unhealthy'}: ${detail}\n`),
        (err: Error) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`unhealthy: ${err.message}\n`),
      );
      return;
    }
    if (path === '/readyz') {
      const ok = h.ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n');
      return;
    }
    res.writeHead(404).end();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      log.info({ port: (server.address() as AddressInfo).port }, 'metrics listening');
      resolve(server);
    });
  });
}
