// A node's local copy of the other nodes' routes: answers hasRemoteRoute() synchronously and picks the
// target nodes of a publish without a round trip.

import { TopicTrie } from './trie.ts';

interface RouteEntry {
  readonly node: string;
  readonly filter: string;
  readonly group: string;
  /** `${group}/${filter}`: the shared subscription's identity across nodes. */
  readonly key: string;
}

export interface Target {
  normal: boolean;
  groups: string[];
}

export type RouteChange = (filter: string, group: string, present: boolean) => void;

function memberOf(filter: string, group: string): string {
  return `${group}\u0000${filter}`;
}

export class RouteReplica {
  private readonly trie = new TopicTrie<RouteEntry>();
  private readonly byNode = new Map<string, Map<string, RouteEntry>>();
  /** How many nodes hold each (filter, group), to report only the empty ↔ non-empty transitions. */
  private readonly holders = new Map<string, number>();
  /** Round-robin position per shared group, so a group's messages spread over its nodes. */
  private readonly cursors = new Map<string, number>();
  private readonly onChange: RouteChange | undefined;

  constructor(onChange?: RouteChange) {
    this.onChange = onChange;
  }

  nodes(): IterableIterator<string> {
    return this.byNode.keys();
  }

  add(node: string, filter: string, group: string): void {
    let routes = this.byNode.get(node);
    if (!routes) {
      routes = new Map();
      this.byNode.set(node, routes);
    }
    const member = memberOf(filter, group);
    if (routes.has(member)) return;
    const entry: RouteEntry = { node, filter, group, key: `${group}/${filter}` };
    routes.set(member, entry);
    this.trie.add(filter, entry);
    const count = (this.holders.get(member) ?? 0) + 1;
    this.holders.set(member, count);
    if (count === 1) this.onChange?.(filter, group, true);
  }

  remove(node: string, filter: string, group: string): void {
    const routes = this.byNode.get(node);
    const member = memberOf(filter, group);
    const entry = routes?.get(member);
    if (!routes || !entry) return;
    routes.delete(member);
    if (routes.size === 0) this.byNode.delete(node);
    this.trie.remove(filter, entry);
    const count = this.holders.get(member)! - 1;
    if (count > 0) {
      this.holders.set(member, count);
      return;
    }
    this.holders.delete(member);
    this.cursors.delete(entry.key);
    this.onChange?.(filter, group, false);
  }

  /** Replaces one node's routes, reporting only what actually changed. */
  resetNode(node: string, routes: ReadonlyArray<readonly [string, string]>): void {
    const next = new Set(routes.map(([f, g]) => memberOf(f, g)));
    const current = this.byNode.get(node);
    if (current) for (const [member, e] of [...current]) if (!next.has(member)) this.remove(node, e.filter, e.group);
    for (const [filter, group] of routes) this.add(node, filter, group);
  }

  dropNode(node: string): void {
    this.resetNode(node, []);
  }

  /** Replaces everything with a snapshot (node → routes). */
  replaceAll(snapshot: ReadonlyMap<string, ReadonlyArray<readonly [string, string]>>): void {
    for (const node of [...this.byNode.keys()]) if (!snapshot.has(node)) this.dropNode(node);
    for (const [node, routes] of snapshot) this.resetNode(node, routes);
  }

  hasMatch(topic: string): boolean {
    return this.trie.matchesAny(topic);
  }

  /** The nodes a message for topic goes to: every node with a plain route, and one node per shared group
   *  not in servedGroups. */
  targets(topic: string, servedGroups?: ReadonlySet<string>): Map<string, Target> {
    const out = new Map<string, Target>();
    let groups: Map<string, string[]> | null = null;
    this.trie.match(topic, (e) => {
      if (e.group === '') {
        const t = out.get(e.node);
        if (t) t.normal = true;
        else out.set(e.node, { normal: true, groups: [] });
        return;
      }
      if (servedGroups?.has(e.key)) return;
      groups ??= new Map();
      const list = groups.get(e.key);
      if (list) list.push(e.node);
      else groups.set(e.key, [e.node]);
    });
    if (groups)
      for (const [key, nodes] of groups as Map<string, string[]>) {
        const cursor = this.cursors.get(key) ?? 0;
        this.cursors.set(key, (cursor + 1) % 0x7fffffff);
        const node = nodes[cursor % nodes.length]!;
        const t = out.get(node);
        if (t) t.groups.push(key);
        else out.set(node, { normal: false, groups: [key] });
      }
    return out;
  }
}
