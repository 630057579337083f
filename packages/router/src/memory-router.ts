import type { NodeHandlers, Router } from './contract.ts';
import { TopicTrie } from './trie.ts';
import { topicMatches } from './topic.ts';
import { sessionExpiresAt } from './session-expiry.ts';
import type { HandoverSignal, Message, SessionClaim, SessionOwner, StoredSession, StoredWill } from './types.ts';

/** A route's value in the trie: '' for plain subscribers, the group name for shared subscriptions. */
type RouteKey = string;

interface NodeEntry {
  handlers: NodeHandlers;
  routes: TopicTrie<RouteKey>;
}

interface SessionEntry {
  owner?: SessionOwner;
  stored?: StoredSession;
  queue: Message[];
}

/**
 * The state one in-memory cluster shares. A single node uses one of these with one router; the
 * contract tests put several routers on one to check cross-node behaviour without Redis.
 */
export class MemoryCluster {
  readonly nodes = new Map<string, NodeEntry>();
  readonly retained = new Map<string, Message>();
  readonly sessions = new Map<string, SessionEntry>();
  readonly wills = new Map<string, StoredWill>();
  /** Round-robin cursor per shared group, so a group's messages spread over its nodes. */
  readonly groupCursor = new Map<string, number>();
}

function sameOwner(a: SessionOwner | undefined, b: SessionOwner): boolean {
  return !!a && a.nodeId === b.nodeId && a.workerId === b.workerId && a.connId === b.connId;
}

export class MemoryRouter implements Router {
  readonly nodeId: string;
  private readonly cluster: MemoryCluster;
  private entry: NodeEntry | null = null;

  constructor(options: { nodeId: string; cluster?: MemoryCluster }) {
    this.nodeId = options.nodeId;
    this.cluster = options.cluster ?? new MemoryCluster();
  }

  async start(handlers: NodeHandlers): Promise<void> {
    this.entry = { handlers, routes: new TopicTrie() };
    this.cluster.nodes.set(this.nodeId, this.entry);
    if (!handlers.routesChanged) return;
    const seen = new Set<string>();
    for (const [id, node] of this.cluster.nodes) {
      if (id === this.nodeId) continue;
      for (const [filter, group] of node.routes.entries()) {
        const key = `${group}\u0000${filter}`;
        if (seen.has(key)) continue;
        seen.add(key);
        handlers.routesChanged(filter, group, true);
      }
    }
  }

  async close(): Promise<void> {
    const entry = this.entry;
    if (!entry) return;
    this.cluster.nodes.delete(this.nodeId);
    this.entry = null;
    for (const [filter, group] of [...entry.routes.entries()]) this.notifyRoute(filter, group, false);
  }

  async addRoute(filter: string, group = ''): Promise<void> {
    const routes = this.live().routes;
    if (routes.has(filter, group)) return;
    routes.add(filter, group);
    this.notifyRoute(filter, group, true);
  }

  async removeRoute(filter: string, group = ''): Promise<void> {
    const routes = this.live().routes;
    if (!routes.has(filter, group)) return;
    routes.remove(filter, group);
    this.notifyRoute(filter, group, false);
  }

  /** Tells every other node whose set of remote holders of (filter, group) became non-empty or empty. */
  private notifyRoute(filter: string, group: string, present: boolean): void {
    for (const [id, node] of this.cluster.nodes) {
      if (id === this.nodeId || !node.handlers.routesChanged) continue;
      let holders = 0;
      for (const [other, n] of this.cluster.nodes) if (other !== id && n.routes.has(filter, group)) holders++;
      if (present ? holders === 1 : holders === 0) node.handlers.routesChanged(filter, group, present);
    }
  }

  isLive(nodeId: string): boolean {
    return this.cluster.nodes.has(nodeId);
  }

  hasRemoteRoute(topic: string): boolean {
    for (const [id, node] of this.cluster.nodes) if (id !== this.nodeId && node.routes.matchesAny(topic)) return true;
    return false;
  }

  async publish(message: Message, servedGroups?: ReadonlySet<string>): Promise<void> {
    // For each shared group (filter + group), the candidate nodes; exactly one of them gets it.
    const groupNodes = new Map<string, string[]>();
    const normal = new Set<string>();
    for (const [id, node] of this.cluster.nodes) {
      if (id === this.nodeId) continue;
      node.routes.match(message.topic, (group) => {
        if (group === '') normal.add(id);
      });
      for (const [filter, group] of node.routes.entries()) {
        if (group === '' || !topicMatches(filter, message.topic)) continue;
        const key = `${group}/${filter}`;
        if (servedGroups?.has(key)) continue;
        const list = groupNodes.get(key) ?? [];
        list.push(id);
        groupNodes.set(key, list);
      }
    }
    const chosen = new Map<string, string[]>();
    for (const [key, ids] of groupNodes) {
      const cursor = (this.cluster.groupCursor.get(key) ?? 0) % ids.length;
      this.cluster.groupCursor.set(key, cursor + 1);
      const id = ids[cursor]!;
      const list = chosen.get(id) ?? [];
      list.push(key);
      chosen.set(id, list);
    }
    for (const id of new Set([...normal, ...chosen.keys()])) {
      this.cluster.nodes.get(id)!.handlers.deliver(message, chosen.get(id) ?? [], normal.has(id));
    }
  }

  async setRetained(message: Message): Promise<void> {
    if (message.payload.length === 0) this.cluster.retained.delete(message.topic);
    else this.cluster.retained.set(message.topic, message);
  }

  async getRetained(filter: string): Promise<Message[]> {
    const out: Message[] = [];
    const now = Date.now();
    for (const [topic, message] of this.cluster.retained) {
      if (message.expiresAt !== undefined && message.expiresAt <= now) {
        this.cluster.retained.delete(topic);
        continue;
      }
      if (topicMatches(filter, topic)) out.push(message);
    }
    return out;
  }

  async retainedCount(): Promise<number> {
    return this.cluster.retained.size;
  }

  async claimSession(clientId: string, owner: SessionOwner, cleanStart: boolean): Promise<SessionClaim> {
    const entry = this.sessionEntry(clientId);
    this.expire(entry);
    const previous = entry.owner;
    entry.owner = owner;
    if (cleanStart) {
      entry.stored = undefined;
      entry.queue = [];
    }
    const claim: SessionClaim = {};
    if (previous && !sameOwner(previous, owner)) {
      claim.previous = previous;
      this.cluster.nodes.get(previous.nodeId)?.handlers.takeover(clientId, previous, owner);
    }
    if (entry.stored) claim.stored = entry.stored;
    return claim;
  }

  async adoptSession(clientId: string, owner: SessionOwner): Promise<StoredSession | null> {
    const entry = this.cluster.sessions.get(clientId);
    if (!entry || entry.owner) return null;
    this.expire(entry);
    if (!entry.stored) return null;
    entry.owner = owner;
    return entry.stored;
  }

  async releaseSession(clientId: string, owner: SessionOwner): Promise<boolean> {
    const entry = this.cluster.sessions.get(clientId);
    if (!entry || !sameOwner(entry.owner, owner)) return false;
    entry.owner = undefined;
    if (!entry.stored && entry.queue.length === 0) this.cluster.sessions.delete(clientId);
    return true;
  }

  async saveSession(session: StoredSession): Promise<void> {
    this.sessionEntry(session.clientId).stored = session;
  }

  async handOver(nodeId: string, signal: HandoverSignal): Promise<void> {
    // Asynchronous like a network hop (deliver() is synchronous, so order with messages holds).
    const node = this.cluster.nodes.get(nodeId);
    if (node) setImmediate(() => node.handlers.handedOver?.(signal));
  }

  async deleteSession(clientId: string): Promise<void> {
    const entry = this.cluster.sessions.get(clientId);
    if (!entry) return;
    entry.stored = undefined;
    entry.queue = [];
    if (!entry.owner) this.cluster.sessions.delete(clientId);
  }

  async enqueue(clientId: string, messages: Message[], limit: number): Promise<number> {
    const entry = this.cluster.sessions.get(clientId);
    if (entry) this.expire(entry);
    if (!entry?.stored) return messages.length;
    let dropped = 0;
    for (const m of messages) {
      if (entry.queue.length >= limit) dropped++;
      else entry.queue.push(m);
    }
    return dropped;
  }

  async takeQueue(clientId: string): Promise<Message[]> {
    const entry = this.cluster.sessions.get(clientId);
    if (!entry) return [];
    this.expire(entry);
    const queue = entry.queue;
    entry.queue = [];
    return queue;
  }

  async offlineSessions(): Promise<StoredSession[]> {
    const out: StoredSession[] = [];
    for (const [clientId, entry] of this.cluster.sessions) {
      this.expire(entry);
      if (!entry.owner && entry.stored) out.push(entry.stored);
      else if (!entry.owner) this.cluster.sessions.delete(clientId);
    }
    return out;
  }

  async setWill(will: StoredWill): Promise<void> {
    this.cluster.wills.set(will.clientId, will);
  }

  async clearWill(clientId: string, owner?: SessionOwner): Promise<boolean> {
    const will = this.cluster.wills.get(clientId);
    if (!will || (owner && !sameOwner(will.owner, owner))) return false;
    this.cluster.wills.delete(clientId);
    return true;
  }

  async claimWill(clientId: string): Promise<StoredWill | null> {
    const will = this.cluster.wills.get(clientId) ?? null;
    this.cluster.wills.delete(clientId);
    return will;
  }

  async willsOf(nodeId: string): Promise<StoredWill[]> {
    return [...this.cluster.wills.values()].filter((w) => w.owner.nodeId === nodeId);
  }

  /** A stored session past its expiry is gone, with its queue (as Redis expires it). */
  private expire(entry: SessionEntry): void {
    if (!entry.stored) return;
    const at = sessionExpiresAt(entry.stored);
    if (at === undefined || at > Date.now()) return;
    entry.stored = undefined;
    entry.queue = [];
  }

  private sessionEntry(clientId: string): SessionEntry {
    let entry = this.cluster.sessions.get(clientId);
    if (!entry) {
      entry = { queue: [] };
      this.cluster.sessions.set(clientId, entry);
    }
    return entry;
  }

  private live(): NodeEntry {
    if (!this.entry) throw new Error('router not started');
    return this.entry;
  }
}
