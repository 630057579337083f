// Moving a session between nodes when a connection on this node claims a session whose previous owner is
// a connection of another node, without losing or duplicating what is published meanwhile.
//
//   claimer (this node)                         previous owner's node
//   claimSession ───────── takeover ──────────▶ detach, collecting: the connection gets 0x8E, the session
//                                               stays subscribed; its queue is enqueued in the router
//   waits ◀──────────────── state ───────────── (the session's state)
//   worker restores it, holding new deliveries,
//   subscribes (acknowledged by every node), CONNACK
//   'resumed' ───────────── resumed ──────────▶ what it routed to the session before has arrived (its
//                                               node's messages precede the signal): stop collecting,
//   waits ◀──────────────── tail ────────────── enqueue what was collected since 'state'
//   merge: the tail first, minus what reached the session both ways (same publisher, receive time and
//   topic), then what was held.
//
// Every wait is bounded: a node that died (not yet declared dead) never answers; the claim then resumes
// the stored copy, and a collecting session left alone is released into the router's queue.
import type { HandoverSignal, Router, SessionOwner, StoredSession } from '@starling/router';
import type { Logger } from '../logger.ts';
import type { ClaimResult, DetachResult, HubCommand } from '../thread-messages.ts';

export interface HandoverDeps {
  router: Router;
  log: Logger;
  command<T>(workerId: number, cmd: HubCommand): Promise<T>;
  /** Sends what is batched for a worker now, so a command sent next stays behind it. */
  flush(workerId: number): void;
  /** Resolves once this node's workers know every remote route this node has heard of. */
  routesSettled(): Promise<void>;
  /** Resolves once everything this node's workers routed so far has reached the hub (and the router). */
  drainWorkers(): Promise<void>;
  maxQueued: number;
  /** How long the claimer waits for each answer at most; it stops earlier once the other node is not
   *  live any more (Router.isLive). */
  answerMs: number;
  /** How long a collecting session waits for 'resumed'. */
  collectMs: number;
}

type Step = HandoverSignal['step'];

/** How often a wait for another node's answer looks at whether that node is still live. */
const LIVENESS_CHECK_MS = 250;

function key(step: Step, clientId: string, to: SessionOwner): string {
  return `${step}\u0000${clientId}\u0000${to.workerId}\u0000${to.connId}`;
}

interface Waiting {
  settle(signal: HandoverSignal | null): void;
}

export class SessionHandover {
  private readonly deps: HandoverDeps;
  private readonly waiting = new Map<string, Waiting>();
  /** Claims of this node that resumed a collected session: the previous owner, until 'resumed'. */
  private readonly resuming = new Map<string, { from: SessionOwner; done: () => void }>();
  /** Sessions this node is taking over from another node, until merged, by client id: a takeover of
   *  the same session (from here or elsewhere) waits for it, so moves of one session never overlap. */
  private readonly moving = new Map<string, Promise<void>>();
  /** Sessions of this node collecting for a claim elsewhere, by (clientId, claimer). */
  private readonly collecting = new Map<string, { owner: SessionOwner; timer: NodeJS.Timeout }>();

  constructor(deps: HandoverDeps) {
    this.deps = deps;
  }

  // ---- claiming side ----

  /** Call before claimSession: the 'state' answer may arrive before the claim's reply. */
  expectState(clientId: string, to: SessionOwner): { wait(from: string): Promise<HandoverSignal | null>; cancel(): void } {
    return this.expect('state', clientId, to);
  }

  /** The previous owner's node answers unless it died: its liveness is checked while waiting. */
  private alive(nodeId: string): boolean {
    return this.deps.router.isLive?.(nodeId) ?? true;
  }

  /**
   * After a claim that displaced `from` on another node: waits for its state and fills the result.
   * Without an answer in time the stored copy is resumed (the claim's own reply).
   */
  async claimed(state: (from: string) => Promise<HandoverSignal | null>, clientId: string, to: SessionOwner, from: SessionOwner, stored: StoredSession | undefined, cleanStart: boolean, result: ClaimResult): Promise<void> {
    const answer = await state(from.nodeId);
    result.tookOver = true;
    if (!answer) this.deps.log.warn({ clientId, from: from.nodeId, maxWaitMs: this.deps.answerMs }, 'session handover not answered; resuming the stored copy');
    if (cleanStart) {
      // Nothing to keep: the previous node drops what it collects.
      if (answer) this.send(from.nodeId, { step: 'resumed', clientId, to, from, clean: true });
      return;
    }
    result.session = answer?.session ?? stored ?? null;
    result.queue = await this.deps.router.takeQueue(clientId);
    // Only a node that answered with a session keeps one collecting (and sends a tail).
    if (answer?.session && result.session) {
      result.hold = true;
      const k = key('resumed', clientId, to);
      let done!: () => void;
      const moved = new Promise<void>((resolve) => (done = resolve));
      const entry = {
        from,
        done: () => {
          if (this.moving.get(clientId) === moved) this.moving.delete(clientId);
          done();
        },
      };
      this.moving.set(clientId, moved);
      this.resuming.set(k, entry);
      // A connection that ends before its subscriptions are in place never says 'resumed'.
      setTimeout(() => {
        if (this.resuming.get(k) !== entry) return;
        this.resuming.delete(k);
        entry.done();
      }, this.deps.collectMs).unref();
    }
  }

  /** Resolves once no move of the client's session to this node is in progress. */
  settled(clientId: string): Promise<void> {
    return this.moving.get(clientId) ?? Promise.resolve();
  }

  /** The worker restored a held session and has its subscriptions in place: collect the tail, merge. */
  async resumed(workerId: number, to: SessionOwner, clientId: string): Promise<void> {
    const k = key('resumed', clientId, to);
    const entry = this.resuming.get(k);
    if (!entry) return;
    this.resuming.delete(k);
    try {
      await this.resume(workerId, to, clientId, entry.from);
    } finally {
      entry.done();
    }
  }

  private async resume(workerId: number, to: SessionOwner, clientId: string, from: SessionOwner): Promise<void> {
    const tail = this.expect('tail', clientId, to);
    // What this node's publishers sent the previous node before the session's subscriptions were in
    // place here goes out before 'resumed' (the router keeps a node's messages and signals in order).
    await this.deps.drainWorkers();
    this.send(from.nodeId, { step: 'resumed', clientId, to, from, clean: false });
    const answer = await tail.wait(from.nodeId);
    const messages = answer ? await this.deps.router.takeQueue(clientId).catch(() => []) : [];
    if (!answer) this.deps.log.warn({ clientId, from: from.nodeId, maxWaitMs: this.deps.answerMs }, 'session handover: no tail from the previous node');
    // Deliveries already on their way to the worker go first: they are held there, then deduplicated.
    this.deps.flush(workerId);
    const merged = await this.deps.command<boolean>(workerId, { op: 'merge', clientId, messages }).catch(() => false);
    // The session moved on meanwhile: leave the tail where its next claim finds it.
    if (!merged && messages.length > 0) await this.deps.router.enqueue(clientId, messages, this.deps.maxQueued).catch(() => undefined);
  }

  // ---- previous owner's side ----

  /** Another node claimed a session of ours: detach it, collecting, and answer with its state. */
  async takeover(clientId: string, owner: SessionOwner, by: SessionOwner): Promise<void> {
    // Still coming here from a third node: let that finish first (its tail belongs to the session).
    await this.settled(clientId);
    let d: DetachResult = { session: null, queue: [] };
    try {
      d = await this.deps.command<DetachResult>(owner.workerId, { op: 'detach', clientId, connId: owner.connId, keepSession: true, collect: true });
      if (d.queue.length > 0) await this.deps.router.enqueue(clientId, d.queue, this.deps.maxQueued);
    } catch (err) {
      this.deps.log.warn({ clientId, err: (err as Error).message }, 'detaching a session claimed elsewhere failed');
    }
    if (d.session) {
      const k = key('resumed', clientId, by);
      const old = this.collecting.get(k);
      if (old) clearTimeout(old.timer);
      const timer = setTimeout(() => void this.stopCollecting(clientId, by, false, false), this.deps.collectMs);
      timer.unref();
      this.collecting.set(k, { owner, timer });
    }
    this.send(by.nodeId, { step: 'state', clientId, to: by, from: owner, session: d.session });
  }

  /** 'resumed' (or the wait for it ran out): what the collecting session got since 'state' goes to the
   *  router's queue for the claimer. */
  private async stopCollecting(clientId: string, to: SessionOwner, clean: boolean, answer: boolean): Promise<void> {
    const k = key('resumed', clientId, to);
    const entry = this.collecting.get(k);
    if (!entry) return;
    this.collecting.delete(k);
    clearTimeout(entry.timer);
    if (!answer) this.deps.log.warn({ clientId, to: to.nodeId }, 'session handover: the claiming node did not resume; releasing what was collected');
    try {
      // Everything the cluster routed here for the session before the claimer's routes existed has
      // arrived (the claimer's signal follows it): let this node's workers catch up, then stop.
      await this.deps.routesSettled();
      this.deps.flush(entry.owner.workerId);
      const d = await this.deps.command<DetachResult>(entry.owner.workerId, { op: 'release-collected', clientId });
      if (!clean && d.queue.length > 0) await this.deps.router.enqueue(clientId, d.queue, this.deps.maxQueued);
    } catch (err) {
      this.deps.log.warn({ clientId, err: (err as Error).message }, 'session handover: releasing the collecting session failed');
    }
    if (answer && !clean) this.send(to.nodeId, { step: 'tail', clientId, to, from: entry.owner });
  }

  // ---- both ----

  /** A signal from another node (NodeHandlers.handedOver). */
  signal(s: HandoverSignal): void {
    if (s.step === 'resumed') {
      void this.stopCollecting(s.clientId, s.to, s.clean === true, true);
      return;
    }
    const w = this.waiting.get(key(s.step, s.clientId, s.to));
    if (w) w.settle(s);
    else this.deps.log.warn({ clientId: s.clientId, step: s.step }, 'session handover answer came after the wait for it');
  }

  stop(): void {
    for (const { timer } of this.collecting.values()) clearTimeout(timer);
    this.collecting.clear();
    for (const w of this.waiting.values()) w.settle(null);
  }

  private send(nodeId: string, signal: HandoverSignal): void {
    this.deps.router.handOver(nodeId, signal).catch((err: Error) => this.deps.log.warn({ clientId: signal.clientId, step: signal.step, to: nodeId, err: err.message }, 'session handover signal failed'));
  }

  /** Registers a wait for one signal; wait(from) resolves with it, or null after answerMs or once
   *  node `from` is not live. */
  private expect(step: Step, clientId: string, to: SessionOwner): { wait(from: string): Promise<HandoverSignal | null>; cancel(): void } {
    const k = key(step, clientId, to);
    let timer: NodeJS.Timeout | undefined;
    let check: NodeJS.Timeout | undefined;
    let done = false;
    let settle!: (s: HandoverSignal | null) => void;
    const answered = new Promise<HandoverSignal | null>((resolve) => {
      settle = (s) => {
        done = true;
        clearTimeout(timer);
        clearInterval(check);
        if (this.waiting.get(k) === entry) this.waiting.delete(k);
        resolve(s);
      };
    });
    const entry: Waiting = { settle };
    this.waiting.set(k, entry);
    return {
      wait: (from) => {
        if (!done) {
          timer = setTimeout(() => settle(null), this.deps.answerMs);
          check = setInterval(() => this.alive(from) || settle(null), LIVENESS_CHECK_MS);
        }
        return answered;
      },
      cancel: () => settle(null),
    };
  }
}
