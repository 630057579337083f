// Cluster membership over Redis: each node renews a heartbeat key (TTL nodeTtlMs) every heartbeatMs and
// sees the members set. A member whose heartbeat expired is dead; the survivors race to reap it, and the
// reap script's membership check lets exactly one win.

import type { RedisKeys } from './redis-keys.ts';
import type { RedisClient } from './redis-connection.ts';
import { runScript } from './redis-connection.ts';

export interface BeatResult {
  /** False when another node declared this one dead: it must register again. */
  present: boolean;
  /** Every member and whether its heartbeat is present. */
  members: Map<string, boolean>;
}

export class Membership {
  readonly nodeId: string;
  /** Changes with every start, so a heartbeat value tells lives of one node id apart (for operators). */
  readonly incarnation = `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  private readonly keys: RedisKeys;
  private readonly ttlMs: number;

  constructor(nodeId: string, keys: RedisKeys, ttlMs: number) {
    this.nodeId = nodeId;
    this.keys = keys;
    this.ttlMs = ttlMs;
  }

  async beat(client: RedisClient): Promise<BeatResult> {
    const k = this.keys;
    const reply = (await runScript(client, 'beat', [k.members, k.heartbeat(this.nodeId)], [this.nodeId, this.incarnation, this.ttlMs, k.tag])) as Array<string | number>;
    const members = new Map<string, boolean>();
    for (let i = 1; i + 1 < reply.length; i += 2) members.set(String(reply[i]), reply[i + 1] === 1);
    return { present: reply[0] === 1, members };
  }

  /** Tries to reap a dead node: removes it from the members, drops its routes and session owners, and
   *  announces `payload` on the route channel. True for the one caller that did it. */
  async reap(client: RedisClient, node: string, payload: string): Promise<boolean> {
    const k = this.keys;
    const keys = [k.members, k.heartbeat(node), k.routes(node), k.nodeSessions(node)];
    return (await runScript(client, 'reap', keys, [node, k.routeChannel, payload, k.tag])) === 1;
  }

  /** Registers this node with exactly `routes`; `fresh` (at start) also releases what a previous life
   *  of this node id left. Returns how many wills that previous life left. */
  async register(client: RedisClient, routes: string[], payload: string, fresh: boolean): Promise<number> {
    const k = this.keys;
    const id = this.nodeId;
    const keys = [k.members, k.heartbeat(id), k.routes(id), k.nodeSessions(id)];
    const args = [id, this.incarnation, this.ttlMs, fresh ? '1' : '0', k.routeChannel, payload, k.tag, ...routes];
    const [, wills] = (await runScript(client, 'register', keys, args)) as [number, number];
    return wills;
  }

  async leave(client: RedisClient, payload: string): Promise<void> {
    const k = this.keys;
    await runScript(client, 'leave', [k.members, k.heartbeat(this.nodeId), k.routes(this.nodeId)], [this.nodeId, k.routeChannel, payload]);
  }

  /** Every live member's routes (as stored route members). */
  async snapshot(client: RedisClient): Promise<Map<string, string[]>> {
    const reply = (await runScript(client, 'snapshot', [this.keys.members], [this.keys.tag])) as Array<[string, string[]]>;
    return new Map(reply);
  }
}
