import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger.ts';

export interface HttpHandlers {
  metrics(): Promise<{ body: string; contentType: string }>;
  /** Process alive and every worker running. */
  healthy(): boolean;
  /** Listener accepting; false while starting and draining. */
  ready(): boolean;
}

/** /metrics, /healthz and /readyz on their own port, apart from MQTT. */
export function startHttpServer(host: string, port: number, h: HttpHandlers, log: Logger): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
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
    if (path === '/healthz' || path === '/readyz') {
      const ok = path === '/healthz' ? h.healthy() : h.ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'unavailable\n');
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
