import type { Mesh } from '@starling/core/mesh.ts';
import type { Connection } from './connection.ts';

/** Bytes queued on a subscriber's socket above which its publishers are slowed down. */
const SOFT_LIMIT = 256 * 1024;

/**
 * Backpressure from subscribers to publishers. Without it a QoS 0 flood is parsed, routed and then
 * dropped at a backed-up subscriber: all cost, no delivery. Instead, the publisher whose message met a
 * backed-up subscriber stops being read (TCP slows it) until the subscriber drains, and a peer worker
 * gets its batch acknowledged only then. A subscriber backed up longer than `slowMs` is marked slow:
 * publishers resume and its QoS 0 messages are dropped (counted), so one stuck reader never stalls
 * the others.
 */
export class FlowControl {
  /** The connection whose PUBLISH is being routed right now (null for batches from peers). */
  source: Connection | null = null;
  readonly congested = new Set<Connection>();
  private readonly mesh: Mesh;
  private readonly slowMs: number;

  constructor(mesh: Mesh, slowMs: number) {
    this.mesh = mesh;
    this.slowMs = slowMs;
    mesh.canAck = () => this.congested.size === 0;
  }

  /** After a write to subscriber: slow its feeders down if it is backing up. */
  afterWrite(subscriber: Connection): void {
    if (subscriber.slow || subscriber.socketBacklog() < SOFT_LIMIT) return;
    if (!this.congested.has(subscriber)) {
      this.congested.add(subscriber);
      subscriber.congestedSince = Date.now();
      subscriber.socket.once('drain', () => this.drained(subscriber));
    }
    const src = this.source;
    if (src && src !== subscriber && !subscriber.blocking.has(src)) {
      subscriber.blocking.add(src);
      src.holdReading();
    }
  }

  /** A message for a peer that has fallen behind: hold the publisher until the peer catches up. */
  peerBehind(peer: number): void {
    const src = this.source;
    if (!src || src.waitingForPeer) return;
    src.waitingForPeer = true;
    src.holdReading();
    this.mesh.whenCaughtUp(peer, () => {
      src.waitingForPeer = false;
      src.releaseReading();
    });
  }

  /** Called by the sweep: subscribers backed up for too long stop holding their publishers. */
  sweep(now: number): void {
    for (const sub of this.congested) {
      if (now - sub.congestedSince < this.slowMs) continue;
      sub.slow = true;
      this.release(sub);
    }
  }

  private drained(sub: Connection): void {
    sub.slow = false;
    this.release(sub);
  }

  /** Lets go of everything a subscriber was holding (also when it closes). */
  release(sub: Connection): void {
    this.congested.delete(sub);
    sub.congestedSince = 0;
    for (const src of sub.blocking) src.releaseReading();
    sub.blocking.clear();
    this.mesh.releaseAcks();
  }
}
