// Types that cross thread and node boundaries. Plain data only: they are structured-cloned between
// worker threads and JSON/msgpack-encoded into Redis.

export type QoS = 0 | 1 | 2;

/** The MQTT 5 properties a broker forwards untouched from publisher to subscriber (MQTT 5.0 §3.3.2.3). */
export interface ForwardedProperties {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Uint8Array;
  userProperties?: Record<string, string | string[]>;
}

export interface Message {
  topic: string;
  payload: Uint8Array;
  qos: QoS;
  retain: boolean;
  properties?: ForwardedProperties;
  /** Absolute expiry (epoch ms) from Message Expiry Interval; absent means never. */
  expiresAt?: number;
  /** Client id of the publisher, for No Local [MQTT-3.8.3-3]. */
  origin: string;
  /** Epoch ms at which the broker received the PUBLISH; feeds the latency histogram. */
  receivedAt: number;
}

/** Where a connected session lives: node, worker thread and connection. */
export interface SessionOwner {
  nodeId: string;
  workerId: number;
  connId: number;
}

export interface SubscriptionOptions {
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId?: number;
}

/** A persistent session at rest: what survives the connection (MQTT 5.0 §4.1). */
export interface StoredSession {
  clientId: string;
  protocolVersion: 3 | 4 | 5;
  subscriptions: Record<string, SubscriptionOptions>;
  /** Session Expiry Interval in seconds; 0xFFFFFFFF never expires. */
  expiryInterval: number;
  /** Epoch ms when the session went offline (expiry counts from here). */
  disconnectedAt?: number;
  /** Outbound QoS 1/2 messages not yet completed, with the packet id they were sent with. */
  inflight: Array<{ packetId: number; message: Message; state: 'publish' | 'pubrel' }>;
  /** Inbound QoS 2 packet ids received but not yet released (PUBREC sent, PUBREL pending). */
  inboundQos2: number[];
}

export interface StoredWill {
  clientId: string;
  owner: SessionOwner;
  message: Message;
  /** Epoch ms at which the will becomes due (Will Delay Interval), set when the connection ends. */
  dueAt?: number;
  /** Will Delay Interval in ms (already capped by the Session Expiry Interval [MQTT-3.1.3-9]), for a node
   *  publishing the will of a connection that ended with another node. */
  delayMs?: number;
}

/**
 * One step of moving a session between two nodes after a claim displaced a connection of another node.
 * 'state': the previous owner's node closed its connection and sends the session's state (its queue
 * enqueued first); it keeps the session subscribed, collecting. 'resumed': the claiming node has the
 * session subscribed: the previous owner's node stops collecting (clean: drops it). 'tail': what it
 * collected meanwhile is enqueued.
 */
export interface HandoverSignal {
  step: 'state' | 'resumed' | 'tail';
  clientId: string;
  /** The connection that claimed the session. */
  to: SessionOwner;
  /** The connection it displaced. */
  from: SessionOwner;
  /** 'state': the session's state (null when that node held none). */
  session?: StoredSession | null;
  /** 'resumed': the claim had Clean Start: nothing to keep. */
  clean?: boolean;
}

export interface SessionClaim {
  /** The owner this claim displaced (session takeover), if the session was connected elsewhere. */
  previous?: SessionOwner;
  /** The session's stored state when one existed and clean start was not requested. */
  stored?: StoredSession;
}
