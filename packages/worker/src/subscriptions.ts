import { TopicTrie } from '@starling/router';
import type { Subscription } from './session.ts';

/**
 * The worker's local subscriptions: a trie of (filter → subscriptions) plus, per shared group, its
 * members here, and a count per (filter, group) so the mesh hears of a route only on its first and
 * last subscriber.
 */
export class LocalSubscriptions {
  readonly trie = new TopicTrie<Subscription>();
  /** `${group}/${filter}` → members on this worker, in round-robin order. */
  readonly groups = new Map<string, { members: Subscription[]; next: number }>();
  private readonly routeCount = new Map<string, number>();

  /** Adds sub; returns true when (filter, group) is new on this worker. */
  add(sub: Subscription): boolean {
    this.trie.add(sub.filter, sub);
    if (sub.group !== '') {
      const key = `${sub.group}/${sub.filter}`;
      const g = this.groups.get(key) ?? { members: [], next: 0 };
      g.members.push(sub);
      this.groups.set(key, g);
    }
    const key = `${sub.group}\u0000${sub.filter}`;
    const n = this.routeCount.get(key) ?? 0;
    this.routeCount.set(key, n + 1);
    return n === 0;
  }

  /** Removes sub; returns true when (filter, group) has no subscriber left here. */
  remove(sub: Subscription): boolean {
    this.trie.remove(sub.filter, sub);
    if (sub.group !== '') {
      const key = `${sub.group}/${sub.filter}`;
      const g = this.groups.get(key);
      if (g) {
        g.members = g.members.filter((m) => m !== sub);
        if (g.members.length === 0) this.groups.delete(key);
      }
    }
    const key = `${sub.group}\u0000${sub.filter}`;
    const n = (this.routeCount.get(key) ?? 1) - 1;
    if (n <= 0) this.routeCount.delete(key);
    else this.routeCount.set(key, n);
    return n <= 0;
  }

  /** Every (filter, group) with a subscriber here, for a new peer's route sync. */
  *routes(): IterableIterator<{ filter: string; group: string }> {
    for (const key of this.routeCount.keys()) {
      const i = key.indexOf('\u0000');
      yield { group: key.slice(0, i), filter: key.slice(i + 1) };
    }
  }

  /** Picks the next member of a local shared group, or null when none. */
  pickMember(key: string): Subscription | null {
    const g = this.groups.get(key);
    if (!g || g.members.length === 0) return null;
    const sub = g.members[g.next % g.members.length]!;
    g.next = (g.next + 1) % g.members.length;
    return sub;
  }
}
