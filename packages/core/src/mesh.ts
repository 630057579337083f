import type { MessagePort } from 'node:worker_threads';
import { TopicTrie } from '@starling/router';
import type { Envelope, MeshMessage } from './thread-messages.ts';

/** A destination for a topic: another peer, for its plain subscribers ('') or a shared group. */
export interface PeerRoute {
  readonly peer: number;
  readonly group: string;
  /** The route's filter; with group it names the shared subscription (`group/filter`). */
  readonly filter: string;
}

/** Messages per cross-thread batch, and batches a peer may have unprocessed before publishers wait. */
const MAX_BATCH = 512;
const MAX_UNACKED = 4;

interface Port {
  postMessage(value: unknown): void;
}

interface PendingAnnounce {
  waitingFor: Set<number>;
  resolve: () => void;
}

/**
 * The mesh between this thread and its peers (other workers and the hub). Keeps a replica of the
 * peers' routes, so a publish is forwarded only to peers with a matching subscriber, and batches
 * forwarded messages per event-loop turn: one postMessage per peer per turn, not per message.
 */
export class Mesh {
  readonly routes = new TopicTrie<PeerRoute>();
  /** Peer routes that are shared groups; 0 lets the publish path skip group handling. */
  sharedRoutes = 0;
  private readonly ports = new Map<number, Port>();
  private readonly interned = new Map<string, PeerRoute>();
  private readonly batches = new Map<number, Envelope[]>();
  private readonly pending = new Map<number, PendingAnnounce>();
  private flushScheduled = false;
  private seq = 0;
  /** Batches sent to a peer and not yet acknowledged: the sender slows its publishers past a few. */
  private readonly unacked = new Map<number, number>();
  /** Batch acks held back while this thread's subscribers are backed up. */
  private heldAcks: number[] = [];
  /** Callbacks waiting for a peer to catch up. */
  private readonly peerWaiters = new Map<number, Array<() => void>>();
  /** Whether this thread can take more batches now (no backed-up subscriber); null: always. */
  canAck: (() => boolean) | null = null;
  private readonly selfId: number;
  private readonly onBatch: (from: number, batch: Envelope[]) => void;

  constructor(selfId: number, onBatch: (from: number, batch: Envelope[]) => void) {
    this.selfId = selfId;
    this.onBatch = onBatch;
  }

  get peerIds(): IterableIterator<number> {
    return this.ports.keys();
  }

  /** Connects a peer. `listen` is false for the parent port, whose messages the worker dispatches itself. */
  addPeer(id: number, port: Port | MessagePort, listen: boolean): void {
    this.ports.set(id, port);
    if (listen) (port as MessagePort).on('message', (msg: MeshMessage) => this.receive(id, msg));
  }

  /** Forgets a peer that is gone: its routes vanish and nobody waits for its acks. */
  removePeer(id: number): void {
    this.ports.delete(id);
    this.batches.delete(id);
    this.unacked.delete(id);
    this.heldAcks = this.heldAcks.filter((p) => p !== id);
    for (const fn of this.peerWaiters.get(id) ?? []) fn();
    this.peerWaiters.delete(id);
    const stale: Array<[string, PeerRoute]> = [];
    for (const [filter, route] of this.routes.entries()) if (route.peer === id) stale.push([filter, route]);
    for (const [filter, route] of stale) this.dropRoute(filter, route);
    for (const [seq, p] of this.pending) {
      p.waitingFor.delete(id);
      if (p.waitingFor.size === 0) {
        this.pending.delete(seq);
        p.resolve();
      }
    }
  }

  /** Tells every peer that this thread gained or lost its first/last subscriber for (filter, group);
   *  resolves when all of them have applied it, so a SUBACK sent after it is true for every publisher. */
  announce(op: 'add' | 'remove', filter: string, group: string): Promise<void> {
    if (this.ports.size === 0) return Promise.resolve();
    const seq = ++this.seq;
    const msg: MeshMessage = { t: 'route', op, filter, group, from: this.selfId, seq };
    return new Promise((resolve) => {
      this.pending.set(seq, { waitingFor: new Set(this.ports.keys()), resolve });
      for (const port of this.ports.values()) port.postMessage(msg);
    });
  }

  /**
   * Resolves once every peer answered: whatever a peer sent this thread before answering (it flushes its
   * batches first) has arrived. Messages on different ports have no order among them; this gives one.
   */
  barrier(): Promise<void> {
    if (this.ports.size === 0) return Promise.resolve();
    const seq = ++this.seq;
    const msg: MeshMessage = { t: 'barrier', seq, from: this.selfId };
    return new Promise((resolve) => {
      this.pending.set(seq, { waitingFor: new Set(this.ports.keys()), resolve });
      for (const port of this.ports.values()) port.postMessage(msg);
    });
  }

  /** Sends this thread's routes to a new peer (its acks are ignored: nobody awaits them). */
  syncTo(id: number, routes: Iterable<{ filter: string; group: string }>): void {
    const port = this.ports.get(id);
    if (!port) return;
    for (const { filter, group } of routes) port.postMessage({ t: 'route', op: 'add', filter, group, from: this.selfId, seq: 0 });
    port.postMessage({ t: 'sync-done' });
  }

  /** Queues an envelope for a peer; flushed once per event-loop turn. */
  send(peer: number, envelope: Envelope): void {
    let batch = this.batches.get(peer);
    if (!batch) {
      batch = [];
      this.batches.set(peer, batch);
    }
    batch.push(envelope);
    // One socket read can carry thousands of messages: bounded batches keep the ack-based
    // backpressure fine-grained (and a receiver's turn short).
    if (batch.length >= MAX_BATCH) {
      this.flushPeer(peer, batch);
      return;
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    for (const [peer, batch] of this.batches) if (batch.length > 0) this.flushPeer(peer, batch);
  };

  /** Sends what is batched for peer now, so a message sent to it another way next stays behind it. */
  flushNow(peer: number): void {
    const batch = this.batches.get(peer);
    if (batch && batch.length > 0) this.flushPeer(peer, batch);
  }

  private flushPeer(peer: number, batch: Envelope[]): void {
    this.ports.get(peer)?.postMessage({ t: 'pub', batch });
    this.unacked.set(peer, (this.unacked.get(peer) ?? 0) + 1);
    this.batches.set(peer, []);
  }

  /** Whether a peer has fallen behind (more than a couple of turns of batches unprocessed). */
  isBehind(peer: number): boolean {
    return (this.unacked.get(peer) ?? 0) > MAX_UNACKED;
  }

  /** Calls fn once the peer has caught up. */
  whenCaughtUp(peer: number, fn: () => void): void {
    const list = this.peerWaiters.get(peer);
    if (list) list.push(fn);
    else this.peerWaiters.set(peer, [fn]);
  }

  /** Sends the batch acks held back while subscribers were backed up. */
  releaseAcks(): void {
    if (this.heldAcks.length === 0 || (this.canAck && !this.canAck())) return;
    for (const peer of this.heldAcks) this.ports.get(peer)?.postMessage({ t: 'pub-ack' });
    this.heldAcks = [];
  }

  private ackBatch(from: number): void {
    if (this.heldAcks.length > 0 || (this.canAck && !this.canAck())) this.heldAcks.push(from);
    else this.ports.get(from)?.postMessage({ t: 'pub-ack' });
  }

  private onAck(from: number): void {
    const n = Math.max(0, (this.unacked.get(from) ?? 0) - 1);
    this.unacked.set(from, n);
    if (n > MAX_UNACKED) return;
    const waiters = this.peerWaiters.get(from);
    if (!waiters) return;
    this.peerWaiters.delete(from);
    for (const fn of waiters) fn();
  }

  /** Handles a mesh message from a peer; returns false when it is not mesh traffic. */
  receive(from: number, msg: MeshMessage | { t: string }): boolean {
    switch (msg.t) {
      case 'pub':
        this.onBatch(from, (msg as { batch: Envelope[] }).batch);
        this.ackBatch(from);
        return true;
      case 'pub-ack':
        this.onAck(from);
        return true;
      case 'route': {
        const m = msg as Extract<MeshMessage, { t: 'route' }>;
        // What this thread routed before learning of the change leaves before its acknowledgement does.
        this.flush();
        const route = this.intern(m.from, m.group, m.filter);
        if (m.op === 'add') {
          if (!this.routes.has(m.filter, route)) {
            this.routes.add(m.filter, route);
            if (m.group !== '') this.sharedRoutes++;
          }
        } else this.dropRoute(m.filter, route);
        const before = this.beforeAck?.(m.op, m.filter, m.group);
        if (m.seq !== 0) {
          const ack = () => this.ports.get(from)?.postMessage({ t: 'route-ack', seq: m.seq });
          if (before) void before.then(ack, ack);
          else ack();
        }
        return true;
      }
      case 'barrier': {
        const m = msg as Extract<MeshMessage, { t: 'barrier' }>;
        this.flush();
        this.ports.get(m.from)?.postMessage({ t: 'route-ack', seq: m.seq });
        return true;
      }
      case 'route-ack': {
        const seq = (msg as { seq: number }).seq;
        const p = this.pending.get(seq);
        if (p) {
          p.waitingFor.delete(from);
          if (p.waitingFor.size === 0) {
            this.pending.delete(seq);
            p.resolve();
          }
        }
        return true;
      }
      case 'sync-done':
        this.syncDone(from);
        return true;
      default:
        return false;
    }
  }

  /** Work to finish before acknowledging a route change (the hub registers the route cluster-wide). */
  beforeAck: ((op: 'add' | 'remove', filter: string, group: string) => Promise<void> | null) | null = null;

  /** Called when a peer finished sending its routes; the worker waits for all before taking sockets. */
  syncDone: (from: number) => void = () => {};

  private dropRoute(filter: string, route: PeerRoute): void {
    if (!this.routes.has(filter, route)) return;
    this.routes.remove(filter, route);
    if (route.group !== '') this.sharedRoutes--;
  }

  private intern(peer: number, group: string, filter: string): PeerRoute {
    // Plain routes of a peer share one object whatever the filter: the publish path only needs the peer.
    const key = group === '' ? `${peer}` : `${peer}\u0000${group}\u0000${filter}`;
    let route = this.interned.get(key);
    if (!route) {
      route = { peer, group, filter: group === '' ? '' : filter };
      this.interned.set(key, route);
    }
    return route;
  }
}
