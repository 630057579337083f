import type { HandoverSignal, Message, SessionClaim, SessionOwner, StoredSession, StoredWill } from './types.ts';

/**
 * What a node needs to know from its router. The router calls these; the node (the main thread's hub)
 * implements them.
 */
export interface NodeHandlers {
  /** Messages another node routed here because this node has a matching route. `groups` names the
   *  shared-subscription groups ("group/filter") this node was chosen to serve for the message. */
  deliver(message: Message, groups: readonly string[], normal: boolean): void;
  /** A session owned by a connection of this node was claimed by a connection elsewhere: end it. */
  takeover(clientId: string, owner: SessionOwner, by: SessionOwner): void;
  /** Another node sent a step of moving a session (Router.handOver). */
  handedOver?(signal: HandoverSignal): void;
  /** A node died; this node was chosen (exactly one survivor is) to publish the wills of its clients:
   *  claim them with willsOf(nodeId) + claimWill. The dead node's routes are already gone and its
   *  sessions' owners released. A node restarting under the id of a previous life that left wills
   *  behind gets this for its own id, just after start() resolved. */
  nodeDown?(nodeId: string): void;
  /** The set of OTHER nodes with route (filter, group) went from empty to non-empty (present) or back.
   *  `group` is '' for plain routes. Fired for existing routes during start(), and before the
   *  addRoute/removeRoute of the node that caused it resolves. Lets the hub tell its workers which
   *  topics must be forwarded to other nodes. */
  routesChanged?(filter: string, group: string, present: boolean): void;
}

/**
 * The router contract: routes, retained messages, sessions and wills, shared by every node of a cluster.
 * Two implementations (memory, Redis) pass one contract suite (test/router-contract.ts).
 *
 * Granularity is the node: a node adds a route for a filter once, however many of its clients
 * subscribe to it; within a node, workers route among themselves.
 */
export interface Router {
  readonly nodeId: string;
  start(handlers: NodeHandlers): Promise<void>;
  close(): Promise<void>;

  /** Registers that this node has subscribers for filter (or members of shared group `group`).
   *  Resolves once every live node will route matching messages here. */
  addRoute(filter: string, group?: string): Promise<void>;
  removeRoute(filter: string, group?: string): Promise<void>;
  /** Whether nodeId is a live member as far as this node knows: false once it missed its heartbeats,
   *  was declared dead or left. */
  isLive?(nodeId: string): boolean;
  /** Whether any other node has a route matching topic. Synchronous: answered from a local replica. */
  hasRemoteRoute(topic: string): boolean;
  /** Delivers message to every other node with a matching route (one node per shared group), never to
   *  this node. `servedGroups`: shared groups (`${group}/${filter}`) with members on this node that the
   *  caller already served. Resolves when the message is handed to the transport (at once when no other
   *  node has a matching route); rejects when it cannot be routed. */
  publish(message: Message, servedGroups?: ReadonlySet<string>): Promise<void>;

  /** Stores (or with an empty payload, deletes) the retained message for message.topic. */
  setRetained(message: Message): Promise<void>;
  getRetained(filter: string): Promise<Message[]>;
  retainedCount(): Promise<number>;

  /** Makes owner the session's connection. Displaces and reports a previous owner. Unless cleanStart,
   *  returns the stored session (which stays stored until deleted or overwritten). */
  claimSession(clientId: string, owner: SessionOwner, cleanStart: boolean): Promise<SessionClaim>;
  /** Makes owner the owner of a stored session that has none (its node died, its worker crashed) and
   *  returns it; null when someone owns it meanwhile (a client reconnected) or nothing is stored. */
  adoptSession(clientId: string, owner: SessionOwner): Promise<StoredSession | null>;
  /** Drops ownership if owner still holds it (a taken-over connection must not release the new one). */
  releaseSession(clientId: string, owner: SessionOwner): Promise<boolean>;
  saveSession(session: StoredSession): Promise<void>;
  /** Sends a step of moving a session to another node (after takeover()). Resolves once handed to the
   *  transport. On one Redis (or Sentinel), a node's signals arrive after the messages it published
   *  before them; Redis Cluster may reorder them. */
  handOver(nodeId: string, signal: HandoverSignal): Promise<void>;
  deleteSession(clientId: string): Promise<void>;
  /** Offline queue of a persistent session: bounded (the newest messages beyond limit are dropped);
   *  returns how many messages were dropped. Without a stored session every message is dropped. */
  enqueue(clientId: string, messages: Message[], limit: number): Promise<number>;
  /** Removes and returns the offline queue. */
  takeQueue(clientId: string): Promise<Message[]>;
  /** Persistent sessions stored and not connected anywhere. A stored session whose expiry passed
   *  (disconnectedAt + expiryInterval; 0xFFFFFFFF never) is gone: not listed, not returned by claims. */
  offlineSessions(): Promise<StoredSession[]>;

  setWill(will: StoredWill): Promise<void>;
  /** Removes the will if it still belongs to owner (or to anyone when owner is omitted). */
  clearWill(clientId: string, owner?: SessionOwner): Promise<boolean>;
  /** Atomically removes and returns the will: of concurrent claims exactly one gets it. */
  claimWill(clientId: string): Promise<StoredWill | null>;
  /** Wills whose owner is on nodeId. */
  willsOf(nodeId: string): Promise<StoredWill[]>;
}
