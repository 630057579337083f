// A topic-filter trie. Each filter holds a set of values; match() walks the topic once and yields the
// values of every filter that matches it. Used for subscriptions in workers and for routes in routers.

interface Node<V> {
  children: Map<string, Node<V>> | null;
  values: Set<V> | null;
}

function newNode<V>(): Node<V> {
  return { children: null, values: null };
}

export class TopicTrie<V> {
  private readonly root: Node<V> = newNode();
  private filterCount = 0;

  /** Number of distinct filters with at least one value. */
  get size(): number {
    return this.filterCount;
  }

  /** Adds value under filter; returns true when the filter had no value before. */
  add(filter: string, value: V): boolean {
    let node = this.root;
    for (const level of filter.split('/')) {
      node.children ??= new Map();
      let next = node.children.get(level);
      if (!next) {
        next = newNode();
        node.children.set(level, next);
      }
      node = next;
    }
    node.values ??= new Set();
    const wasEmpty = node.values.size === 0;
    node.values.add(value);
    if (wasEmpty) this.filterCount++;
    return wasEmpty;
  }

  /** Removes value from filter; returns true when the filter has no value left. */
  remove(filter: string, value: V): boolean {
    const levels = filter.split('/');
    const path: Node<V>[] = [this.root];
    let node: Node<V> | undefined = this.root;
    for (const level of levels) {
      node = node.children?.get(level);
      if (!node) return false;
      path.push(node);
    }
    if (!node.values?.delete(value)) return false;
    if (node.values.size > 0) return false;
    node.values = null;
    this.filterCount--;
    // Prune empty branches so a churn of unique filters does not leak nodes.
    for (let i = levels.length; i > 0; i--) {
      const n = path[i]!;
      if (n.values || (n.children && n.children.size > 0)) break;
      path[i - 1]!.children!.delete(levels[i - 1]!);
    }
    return true;
  }

  has(filter: string, value?: V): boolean {
    let node: Node<V> | undefined = this.root;
    for (const level of filter.split('/')) {
      node = node.children?.get(level);
      if (!node) return false;
    }
    if (!node.values) return false;
    return value === undefined ? node.values.size > 0 : node.values.has(value);
  }

  /** Calls visit(value, filterLevels) for every value of every filter matching topic. */
  match(topic: string, visit: (value: V) => void): void {
    const levels = topic.split('/');
    const dollar = topic.charCodeAt(0) === 0x24;
    this.walk(this.root, levels, 0, dollar, visit);
  }

  /** Whether any filter matches topic. */
  matchesAny(topic: string): boolean {
    let found = false;
    this.match(topic, () => {
      found = true;
    });
    return found;
  }

  private walk(node: Node<V>, levels: string[], i: number, dollar: boolean, visit: (v: V) => void): void {
    const children = node.children;
    if (!children) {
      if (i === levels.length && node.values) for (const v of node.values) visit(v);
      return;
    }
    // [MQTT-4.7.2-1] wildcards at the first level do not match topics starting with '$'.
    const wild = !(i === 0 && dollar);
    if (wild) {
      // '#' also matches the parent level ("sport/#" matches "sport") [MQTT-4.7.1-2].
      const hash = children.get('#');
      if (hash?.values) for (const v of hash.values) visit(v);
    }
    if (i === levels.length) {
      if (node.values) for (const v of node.values) visit(v);
      return;
    }
    const exact = children.get(levels[i]!);
    if (exact) this.walk(exact, levels, i + 1, dollar, visit);
    if (wild) {
      const plus = children.get('+');
      if (plus) this.walk(plus, levels, i + 1, dollar, visit);
    }
  }

  /** Every (filter, value) pair, for snapshots. */
  *entries(): IterableIterator<[string, V]> {
    const stack: Array<[Node<V>, string]> = [[this.root, '']];
    while (stack.length) {
      const [node, prefix] = stack.pop()!;
      if (node.values) for (const v of node.values) yield [prefix, v];
      if (node.children)
        for (const [level, child] of node.children) stack.push([child, prefix === '' && node === this.root ? level : `${prefix}/${level}`]);
    }
  }
}
