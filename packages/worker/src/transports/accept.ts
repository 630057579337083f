// A socket handed over by the main thread becomes a Connection here, in the worker: after the PROXY
// protocol header (when the listener expects one), the TLS handshake (tls listener) or the HTTP upgrade
// to WebSocket (ws listener). Nothing of this runs on the main thread.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { ListenerName } from '@starling/core/transports/config.ts';
import { parseProxyHeader } from '@starling/core/transports/proxy-protocol.ts';
import { metric, type MetricJSON } from '@starling/core/metric-json.ts';
import { Connection } from '../connection.ts';
import type { WorkerContext } from '../context.ts';
import { extraMetricSources } from '../limits.ts';

type Stage = 'proxy' | 'tls' | 'ws';
const failures: Record<Stage, number> = { proxy: 0, tls: 0, ws: 0 };
const accepted: Record<ListenerName, number> = { mqtt: 0, tls: 0, ws: 0 };

extraMetricSources.push((): MetricJSON[] => [
  metric('starling_transport_failures_total', 'Sockets that failed before MQTT: PROXY header, TLS handshake or WebSocket upgrade.', 'counter',
    (Object.keys(failures) as Stage[]).map((stage) => ({ labels: { stage }, value: failures[stage] }))),
  metric('starling_transport_connections_total', 'Connections that reached MQTT, by listener.', 'counter',
    (Object.keys(accepted) as ListenerName[]).map((listener) => ({ labels: { listener }, value: accepted[listener] }))),
]);

export interface SocketMessage {
  connId: number;
  socket: unknown;
  acceptedAt: number;
  listener?: ListenerName;
}

interface Prepared {
  stream: Socket;
  remoteAddress?: string;
  certificateUsername?: string | null;
}

export function acceptSocket(ctx: WorkerContext, msg: SocketMessage): void {
  const listener = msg.listener ?? 'mqtt';
  const socket = msg.socket as Socket;
  const cfg = ctx.config;
  const proxy = listener === 'mqtt' ? cfg.proxyProtocol : (cfg[listener]?.proxyProtocol ?? false);
  if (listener === 'mqtt' && !proxy) {
    accepted.mqtt++;
    ctx.connections.set(msg.connId, new Connection(ctx, msg.connId, socket, msg.acceptedAt));
    return;
  }
  socket.on('error', () => undefined); // failures are handled below; a reset must not be an uncaught error
  // The connect deadline counts from accept: a client stuck in the handshake is dropped on time.
  const left = msg.acceptedAt + cfg.timeouts.connectMs - Date.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(Object.assign(new Error('connect timeout before MQTT'), { stage: 'deadline' })), Math.max(0, left))));
  prepare(ctx, listener, socket, proxy)
    .then(
      (p) => Promise.race([p, deadline]),
      (err: unknown) => Promise.reject(err),
    )
    .then(
      (p) => {
        clearTimeout(timer);
        accepted[listener]++;
        const conn = new Connection(ctx, msg.connId, p.stream, msg.acceptedAt);
        if (p.remoteAddress !== undefined) {
          conn.remoteAddress = p.remoteAddress;
          conn.log = conn.log.child({ remote: p.remoteAddress });
        }
        if (p.certificateUsername !== undefined) (conn as Connection & { certificateUsername?: string | null }).certificateUsername = p.certificateUsername;
        ctx.connections.set(msg.connId, conn);
      },
      (err: Error & { stage?: Stage | 'deadline' }) => {
        clearTimeout(timer);
        if (err.stage && err.stage !== 'deadline') failures[err.stage]++;
        ctx.log.debug({ conn: msg.connId, listener, err: err.message }, 'connection failed before MQTT');
        socket.destroy();
        ctx.metrics.disconnected(err.stage === 'deadline' ? 'connect_timeout' : 'socket_error');
        ctx.hub.post({ t: 'conn-end', connId: msg.connId, clientId: null, reason: err.stage === 'deadline' ? 'connect_timeout' : 'socket_error' });
      },
    );
}

function fail(stage: Stage, message: string): Error {
  return Object.assign(new Error(message), { stage });
}

async function prepare(ctx: WorkerContext, listener: ListenerName, socket: Socket, proxy: boolean): Promise<Prepared> {
  let remoteAddress: string | undefined;
  if (proxy) remoteAddress = (await readProxyHeader(socket)) ?? undefined;
  if (listener === 'tls') return { ...(await startTls(ctx, socket)), ...(remoteAddress !== undefined ? { remoteAddress } : {}) };
  if (listener === 'ws') {
    const stream = await upgrade(ctx, socket);
    return { stream, remoteAddress: remoteAddress ?? socket.remoteAddress ?? '' };
  }
  return { stream: socket, ...(remoteAddress !== undefined ? { remoteAddress } : {}) };
}

/** Reads the PROXY header off the socket; what follows it stays in the socket for the next reader. */
function readProxyHeader(socket: Socket): Promise<string | null> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        const r = parseProxyHeader(buf);
        if (r.status === 'incomplete') {
          if (buf.length > 4096) return done(fail('proxy', 'PROXY header too long'));
          continue;
        }
        if (r.status === 'error') return done(fail('proxy', `PROXY protocol: ${r.reason}`));
        const rest = buf.subarray(r.consumed);
        socket.off('readable', onReadable);
        socket.off('close', onClose);
        if (rest.length > 0) socket.unshift(rest);
        socket.pause();
        resolve(r.address);
        return;
      }
    };
    const onClose = (): void => done(fail('proxy', 'closed during PROXY header'));
    const done = (err: Error): void => {
      socket.off('readable', onReadable);
      socket.off('close', onClose);
      reject(err);
    };
    socket.on('readable', onReadable);
    socket.once('close', onClose);
  });
}

/**
 * One unlistened tls.Server per worker: sockets from the main thread are emitted into it, so Node's own
 * server-side checks apply (client certificate verification, rejectUnauthorized, handshake timeout).
 */
let tlsServer: tls.Server | null = null;
const tlsWaiting = new Map<string, { resolve: (p: Prepared) => void; reject: (e: Error) => void }>();

function peerKey(s: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  return `${s.remoteAddress ?? ''}|${s.remotePort ?? 0}`;
}

function tlsOptions(ctx: WorkerContext): tls.TlsOptions {
  const cfg = ctx.config.tls!;
  return {
    cert: readFileSync(cfg.certFile),
    key: readFileSync(cfg.keyFile),
    ...(cfg.caFile ? { ca: readFileSync(cfg.caFile) } : {}),
  };
}

function ensureTlsServer(ctx: WorkerContext): tls.Server {
  if (tlsServer) return tlsServer;
  const cfg = ctx.config.tls!;
  const server = tls.createServer({
    ...tlsOptions(ctx),
    requestCert: cfg.requestCert,
    rejectUnauthorized: cfg.requestCert && cfg.rejectUnauthorized,
    handshakeTimeout: ctx.config.timeouts.connectMs,
  });
  server.on('secureConnection', (tlsSocket: tls.TLSSocket) => {
    const w = tlsWaiting.get(peerKey(tlsSocket));
    if (!w) {
      tlsSocket.destroy();
      return;
    }
    tlsWaiting.delete(peerKey(tlsSocket));
    tlsSocket.pause(); // the Connection resumes it: nothing is read before it listens
    let certificateUsername: string | null | undefined;
    if (cfg.useCnAsUsername) {
      const cert = tlsSocket.authorized ? tlsSocket.getPeerCertificate() : null;
      const cn = cert?.subject?.CN as string | string[] | undefined;
      certificateUsername = typeof cn === 'string' && cn !== '' ? cn : Array.isArray(cn) ? (cn[0] ?? null) : null;
    }
    w.resolve({ stream: tlsSocket as unknown as Socket, ...(certificateUsername !== undefined ? { certificateUsername } : {}) });
  });
  server.on('tlsClientError', (err: Error, tlsSocket: tls.TLSSocket) => {
    const w = tlsWaiting.get(peerKey(tlsSocket));
    tlsWaiting.delete(peerKey(tlsSocket));
    tlsSocket.destroy();
    w?.reject(fail('tls', `TLS: ${err.message}`));
  });
  tlsServer = server;
  return server;
}

/** Re-reads the certificate files (SIGHUP on the main thread); a broken file keeps the previous ones. */
export function reloadTls(ctx: WorkerContext): void {
  if (!ctx.config.tls) return;
  try {
    const opts = tlsOptions(ctx);
    tls.createSecureContext(opts); // validates before swapping
    ensureTlsServer(ctx).setSecureContext(opts);
    ctx.log.info('tls certificates reloaded');
  } catch (err) {
    ctx.log.error({ err: (err as Error).message }, 'tls certificate reload failed; keeping the previous ones');
  }
}

function startTls(ctx: WorkerContext, socket: Socket): Promise<Prepared> {
  const server = ensureTlsServer(ctx);
  const key = peerKey(socket);
  return new Promise((resolve, reject) => {
    tlsWaiting.set(key, { resolve, reject });
    socket.once('close', () => {
      if (tlsWaiting.get(key)?.reject === reject) {
        tlsWaiting.delete(key);
        reject(fail('tls', 'closed during the TLS handshake'));
      }
    });
    server.emit('connection', socket);
  });
}

let wsServer: { http: http.Server; wss: WebSocketServer } | null = null;

function upgrade(ctx: WorkerContext, socket: Socket): Promise<Socket> {
  const cfg = ctx.config.ws!;
  if (!wsServer) {
    // Never listens: sockets arrive from the main thread and are emitted as connections.
    const server = http.createServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' }).end('MQTT over WebSocket: upgrade required\n');
    });
    server.headersTimeout = ctx.config.timeouts.connectMs;
    server.requestTimeout = ctx.config.timeouts.connectMs;
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: ctx.config.limits.maxPacketSize + 8,
      perMessageDeflate: false,
      // MQTT over WebSocket: subprotocol "mqtt" [MQTT-6.0.0-3]; older clients offer mqttv3.1.
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
    });
    wsServer = { http: server, wss };
  }
  const { http: server, wss } = wsServer;
  return new Promise((resolve, reject) => {
    const onClose = (): void => reject(fail('ws', 'closed before the WebSocket upgrade'));
    socket.once('close', onClose);
    const onUpgrade = (req: http.IncomingMessage, s: Duplex, head: Buffer): void => {
      if (s !== socket) return;
      server.off('upgrade', onUpgrade);
      const path = (req.url ?? '').split('?')[0];
      if (path !== cfg.path) {
        socket.off('close', onClose);
        socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        reject(fail('ws', `upgrade on ${path}, not ${cfg.path}`));
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        socket.off('close', onClose);
        const stream = createWebSocketStream(ws) as unknown as Socket & { remoteAddress?: string };
        // The Connection's socket calls, for a stream that is not a socket: TCP settings go to the socket under it.
        const s2 = stream as unknown as Record<string, unknown>;
        s2.setNoDelay = () => {
          socket.setNoDelay(true);
          return stream;
        };
        s2.setKeepAlive = (enable: boolean, delay: number) => {
          socket.setKeepAlive(enable, delay);
          return stream;
        };
        stream.on('error', () => undefined);
        stream.pause();
        resolve(stream);
      });
    };
    server.on('upgrade', onUpgrade);
    server.emit('connection', socket);
    socket.resume();
  });
}
