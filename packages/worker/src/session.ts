import type { Message, QoS, StoredSession, SubscriptionOptions } from '@starling/router';
import type { Connection } from './connection.ts';

export interface Subscription {
  session: Session;
  /** The filter as the client sent it (with `$share/group/` when shared). */
  fullFilter: string;
  /** The filter matched against topics. */
  filter: string;
  /** Shared-subscription group, '' when not shared. */
  group: string;
  options: SubscriptionOptions;
  /** Granted by the authorization hook's explicit yes: deliveries through it skip the ACL's read check. */
  hookAllowed?: boolean;
}

export interface InflightOut {
  message: Message;
  qos: 1 | 2;
  /** 'publish': waiting for PUBACK/PUBREC; 'pubrel': PUBREL sent, waiting for PUBCOMP. */
  state: 'publish' | 'pubrel';
  retain: boolean;
  subscriptionIds: number[] | null;
  /** Not yet resent on this connection: its id stays reserved until the Receive Maximum makes room. */
  unsent?: boolean;
}

export interface QueuedOut {
  message: Message;
  qos: 1 | 2;
  retain: boolean;
  subscriptionIds: number[] | null;
}

/**
 * State that outlives a connection (MQTT 5.0 §4.1): subscriptions, QoS 1/2 messages in flight or
 * queued, QoS 2 packet ids received. Per-connection state (topic aliases, keepalive) lives on Connection.
 */
export class Session {
  readonly clientId: string;
  protocolVersion: 3 | 4 | 5;
  conn: Connection | null = null;
  /** Session Expiry Interval (s); 0 ends the session with the connection. */
  expiryInterval: number;
  /** Epoch ms the session expires while offline; 0 while connected. */
  expiresAt = 0;
  readonly subscriptions = new Map<string, Subscription>();
  readonly inflight = new Map<number, InflightOut>();
  readonly queue: QueuedOut[] = [];
  readonly inboundQos2 = new Set<number>();
  /** Moving from another node: QoS 1/2 deliveries wait here, behind what that node collected meanwhile
   *  (mergeHandover). Null otherwise. */
  held: QueuedOut[] | null = null;
  /** Some in-flight entries wait to be resent (resumed with a smaller Receive Maximum than they fill). */
  hasUnsent = false;
  private nextId = 1;

  // Fan-out accumulators: one copy per client however many of its subscriptions match [MQTT-3.3.4-2].
  deliverMark = 0;
  deliverQos: QoS = 0;
  deliverRetainAsPublished = false;
  deliverSubIds: number[] | null = null;
  /** Read permission of the session's (last) connection; null: it may read everything (fast path). */
  readAcl: import('@starling/core/auth/acl.ts').ClientAcl | null = null;

  constructor(clientId: string, protocolVersion: 3 | 4 | 5, expiryInterval: number) {
    this.clientId = clientId;
    this.protocolVersion = protocolVersion;
    this.expiryInterval = expiryInterval;
  }

  get persistent(): boolean {
    return this.expiryInterval > 0;
  }

  /** A free packet id [MQTT-2.2.1-3]; null when all 65535 are in use. */
  allocatePacketId(): number | null {
    for (let tries = 0; tries < 65535; tries++) {
      const id = this.nextId;
      this.nextId = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
    return null;
  }

  toStored(): StoredSession {
    const subscriptions: Record<string, SubscriptionOptions> = {};
    for (const [filter, sub] of this.subscriptions) subscriptions[filter] = sub.options;
    return {
      clientId: this.clientId,
      protocolVersion: this.protocolVersion,
      subscriptions,
      expiryInterval: this.expiryInterval,
      disconnectedAt: this.conn ? undefined : Date.now(),
      // The stored message carries the QoS it is delivered at (downgraded to the subscription's), since
      // restoreSession reads it from there: a resume must not upgrade it [MQTT-3.8.4-6].
      inflight: [...this.inflight].map(([packetId, f]) => ({ packetId, message: f.qos === f.message.qos ? f.message : { ...f.message, qos: f.qos }, state: f.state })),
      inboundQos2: [...this.inboundQos2],
    };
  }
}
