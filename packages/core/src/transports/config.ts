// Listeners besides plain MQTT over TCP: MQTT over TLS and over WebSocket, and the PROXY protocol.
import { z } from 'zod';

const port = z.number().int().min(0).max(65535);

export const transportsShape = {
  /** PROXY protocol v1/v2 header expected first on the plain MQTT listener (behind a load balancer). */
  proxyProtocol: z.boolean().default(false),
  /** MQTT over TLS. The TLS handshake runs in the session worker that owns the connection. Certificates are re-read on SIGHUP. */
  tls: z
    .object({
      port: port.default(8883),
      /** Defaults to `host`. */
      host: z.string().optional(),
      certFile: z.string().min(1),
      keyFile: z.string().min(1),
      /** CA bundle for client certificates. */
      caFile: z.string().min(1).optional(),
      /** Ask clients for a certificate. */
      requestCert: z.boolean().default(false),
      /** With requestCert: refuse clients without a certificate the CA signed. */
      rejectUnauthorized: z.boolean().default(true),
      /** The client certificate's subject CN becomes the connection's username (no password check). */
      useCnAsUsername: z.boolean().default(false),
      proxyProtocol: z.boolean().default(false),
    })
    .optional(),
  /** MQTT over WebSocket (subprotocol `mqtt`); the HTTP upgrade runs in the session worker. */
  ws: z
    .object({
      port: port.default(8083),
      host: z.string().optional(),
      path: z.string().startsWith('/').default('/mqtt'),
      proxyProtocol: z.boolean().default(false),
    })
    .optional(),
} as const;

export type ListenerName = 'mqtt' | 'tls' | 'ws';
