// The main thread's extra listeners (TLS, WebSocket): they only accept TCP and hand the paused socket
// to a session worker, which runs the TLS handshake or the HTTP upgrade itself.
import net, { type AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Logger } from '../logger.ts';
import type { ListenerName } from './config.ts';

interface TransportConfig {
  host: string;
  tls?: { port: number; host?: string | undefined; certFile: string; keyFile: string; caFile?: string | undefined } | undefined;
  ws?: { port: number; host?: string | undefined; path: string } | undefined;
}

/** Reads the TLS files into a secure context: at start-up (fail fast) and in each worker. */
export function loadSecureContext(cfg: { certFile: string; keyFile: string; caFile?: string | undefined }): tls.SecureContext {
  return tls.createSecureContext({
    cert: readFileSync(cfg.certFile),
    key: readFileSync(cfg.keyFile),
    ...(cfg.caFile ? { ca: readFileSync(cfg.caFile) } : {}),
  });
}

export class TransportListeners {
  readonly servers = new Map<ListenerName, net.Server>();

  port(name: ListenerName): number {
    return (this.servers.get(name)?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(cfg: TransportConfig, accept: (socket: net.Socket, listener: ListenerName) => void, log: Logger): Promise<void> {
    if (cfg.tls) loadSecureContext(cfg.tls); // a bad certificate or key stops start-up here
    const wanted: Array<[ListenerName, number, string]> = [];
    if (cfg.tls) wanted.push(['tls', cfg.tls.port, cfg.tls.host ?? cfg.host]);
    if (cfg.ws) wanted.push(['ws', cfg.ws.port, cfg.ws.host ?? cfg.host]);
    for (const [name, port, host] of wanted) {
      const server = net.createServer({ pauseOnConnect: true }, (socket) => accept(socket, name));
      server.on('error', (err) => log.error({ err, listener: name }, 'listener error'));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      this.servers.set(name, server);
      log.info({ listener: name, port: this.port(name) }, 'transport listening');
    }
  }

  close(): void {
    for (const s of this.servers.values()) s.close();
  }
}
