// Messages between the main thread (hub) and session workers, and among workers (the mesh).
// Plain data: structured-cloned by postMessage.
import type { Message, StoredSession, StoredWill } from '@starling/router';
import type { DisconnectReason } from './disconnect-reasons.ts';

/** Peer id of the hub (main thread) in the mesh; workers are 1..n. */
export const HUB = 0;

/** One message routed to a peer: deliver to its plain subscribers (`normal`) and to one member of each group. */
export interface Envelope {
  m: Message;
  normal: boolean;
  groups: string[] | null;
}

/** Mesh traffic, between any two peers (workers and the hub). */
export type MeshMessage =
  | { t: 'route'; op: 'add' | 'remove'; filter: string; group: string; from: number; seq: number }
  | { t: 'route-ack'; seq: number }
  /** Answered with route-ack once everything the peer sent before has left: see Mesh.barrier(). */
  | { t: 'barrier'; seq: number; from: number }
  | { t: 'pub'; batch: Envelope[] }
  /** The receiver processed a batch and its subscribers are not backed up: the sender may send more. */
  | { t: 'pub-ack' }
  | { t: 'sync-done' };

export interface ClaimRequest {
  op: 'claim';
  clientId: string;
  connId: number;
  cleanStart: boolean;
  will: StoredWill | null;
}

export interface ClaimResult {
  /** Session state to resume (subscriptions, in-flight, queued), when one existed and clean start was not asked. */
  session: StoredSession | null;
  queue: Message[];
  tookOver: boolean;
  /** Moved from another node, which still collects messages for it: queue QoS 1/2 deliveries until the
   *  hub merges those ('merge'), and tell the hub 'resumed' once the subscriptions are in place. */
  hold?: boolean;
}

export interface ReleaseRequest {
  op: 'release';
  clientId: string;
  connId: number;
  /** The session kept offline by the worker (persistent sessions only). */
  offline: boolean;
}

export type HubRequest =
  | ClaimRequest
  | ReleaseRequest
  | { op: 'save-session'; session: StoredSession }
  | { op: 'delete-session'; clientId: string }
  | { op: 'retained-get'; filter: string }
  | { op: 'retained-set'; message: Message }
  | { op: 'will-publish'; clientId: string; connId: number; delayMs: number }
  | { op: 'will-clear'; clientId: string; connId: number }
  | { op: 'forward'; envelope: Envelope }
  /** A session claimed with ClaimResult.hold has its subscriptions in place. */
  | { op: 'resumed'; clientId: string; connId: number }
  /** Answered by the security service (auth/service.ts), not the hub. */
  | import('./auth/types.ts').SecurityRequest;

/** Worker → hub. */
export type FromWorker =
  | MeshMessage
  | ({ t: 'req'; id: number } & { req: HubRequest })
  | { t: 'res'; id: number; value?: unknown; error?: string }
  | { t: 'conn-end'; connId: number; clientId: string | null; reason: DisconnectReason }
  | { t: 'ready' };

/** What a worker gives up when its session moves to another connection. */
export interface DetachResult {
  session: StoredSession | null;
  queue: Message[];
}

export type HubCommand =
  /** collect: another node claimed it: close the connection but keep the session subscribed, collecting
   *  messages apart, until 'release-collected'. */
  | { op: 'detach'; clientId: string; connId: number; keepSession: boolean; collect?: boolean }
  /** Ends a collecting session: its queue is what arrived since the detach. */
  | { op: 'release-collected'; clientId: string }
  /** Ends the hold of a session moved from another node: `messages` (what that node collected) go first,
   *  minus those that reached the session directly too. Answers false when no such session is held. */
  | { op: 'merge'; clientId: string; messages: Message[] }
  | { op: 'adopt'; sessions: StoredSession[] }
  /** eventLoop false: leave out (and do not reset) the event-loop lag, for readers other than a scrape. */
  | { op: 'metrics'; eventLoop?: boolean }
  /** Liveness: answered as soon as the worker's event loop gets to it. */
  | { op: 'ping' }
  | { op: 'shutdown'; reasonCode: number }
  | { op: 'publish'; message: Message };

/** Hub → worker. Sockets travel in the transfer list. */
export type ToWorker =
  | MeshMessage
  /** acceptedAt: epoch ms of the accept; the connect timeout counts from it, not from the hand-off. */
  | { t: 'socket'; connId: number; socket: unknown; acceptedAt: number; listener?: import('./transports/config.ts').ListenerName }
  /** SIGHUP: re-read the TLS certificate files. */
  | { t: 'tls-reload' }
  | { t: 'peer'; workerId: number; port: MessagePort }
  | { t: 'peer-gone'; workerId: number }
  | { t: 'res'; id: number; value?: unknown; error?: string }
  | ({ t: 'cmd'; id: number } & { cmd: HubCommand });

export interface WorkerData {
  workerId: number;
  nodeId: string;
  config: import('./config.ts').Config;
  /** Worker ids already running: the worker waits for a mesh port from each. */
  peers: number[];
}
