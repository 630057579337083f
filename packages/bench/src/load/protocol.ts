// Messages between the main thread (pool.ts) and load workers (worker.ts).

import type { Endpoint, ProtocolVersion, Qos } from '../types.ts';

export interface WorkerData {
  shared: SharedArrayBuffer;
  slot: number;
  /** process.hrtime.bigint() origin as a decimal string; timestamps are ns since it. */
  epoch: string;
}

export interface PubSpec {
  clientId: string;
  endpoint: Endpoint;
  topic: string;
  quota: number;
  rate: number;
}

export interface SubSpec {
  clientId: string;
  endpoint: Endpoint;
  filter: string;
}

export interface MessagingPlan {
  kind: 'messaging';
  protocol: ProtocolVersion;
  qos: Qos;
  size: number;
  inflight: number;
  keepalive: number;
  /** Handshakes in progress at once within this worker during setup. */
  concurrency: number;
  /** Publishers write send timestamps into payloads and subscribers record latency. */
  stamp: boolean;
  pubs: PubSpec[];
  subs: SubSpec[];
}

export interface ConnectPlan {
  kind: 'connect';
  endpoint: Endpoint;
  protocol: ProtocolVersion;
  keepalive: number;
  idPrefix: string;
  count: number;
  concurrency: number;
  /** Connections per second for this worker; 0 = unbounded. */
  rate: number;
  keep: boolean;
  subscribe: { filterPrefix: string; qos: Qos } | null;
}

export type ToWorker =
  | { type: 'setup'; plan: MessagingPlan | ConnectPlan }
  | { type: 'go'; windowStartNs: number; windowEndNs: number }
  /** Stop publishing but keep connections, so in-flight messages can still arrive. */
  | { type: 'halt' }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'ready'; errors: string[] }
  | { type: 'halted' }
  | { type: 'connect-done'; histogram: string; firstNs: number; lastNs: number; errors: string[] }
  | { type: 'result'; histogram: string | null; errors: string[] }
  | { type: 'fatal'; error: string };
