// Topic authorization per connection: the config's rules narrowed to the ones that apply to a
// user / client id / anonymous connection, with %u and %c substituted. First matching rule wins;
// no match: aclDefault ('allow' unless configured).
import { topicMatches } from '@starling/router';

export interface AclRuleInput {
  action: 'publish' | 'subscribe' | 'all';
  topic: string;
  allow: boolean;
  username?: string | undefined;
  clientId?: string | undefined;
  anonymous?: true | undefined;
}

export type AclDefault = 'allow' | 'deny';

interface Compiled {
  action: 'publish' | 'subscribe' | 'all';
  topic: string;
  allow: boolean;
  /** A deny whose substitution was unsafe (wildcards or '/' in the value): denies everything for its action. */
  all: boolean;
}

export interface Identity {
  username: string | null;
  clientId: string;
}

const CACHE_MAX = 4096;

/** A value substituted into a topic must not change its structure. */
function safeValue(v: string): boolean {
  return !/[+#/\u0000]/.test(v);
}

export class ClientAcl {
  private readonly rules: Compiled[];
  private readonly defaultAllow: boolean;
  /** No rule and default allow: handlers skip the checks. */
  readonly empty: boolean;
  /** Some delivered topic could be unreadable: check each message delivered through a subscription. */
  readonly checksReads: boolean;
  private readCache = new Map<string, boolean>();

  constructor(rules: Compiled[], defaultAllow: boolean) {
    this.rules = rules;
    this.defaultAllow = defaultAllow;
    this.empty = rules.length === 0 && defaultAllow;
    this.checksReads = !defaultAllow || rules.some((r) => !r.allow && r.action !== 'publish');
  }

  canPublish(topic: string): boolean {
    for (const rule of this.rules) {
      if (rule.action === 'subscribe') continue;
      if (rule.all || topicMatches(rule.topic, topic)) return rule.allow;
    }
    return this.defaultAllow;
  }

  /** A subscribe rule covers a filter when equal to it or matching it as a topic. */
  canSubscribe(filter: string): boolean {
    for (const rule of this.rules) {
      if (rule.action === 'publish') continue;
      if (rule.all || rule.topic === filter || topicMatches(rule.topic, filter)) return rule.allow;
    }
    return this.defaultAllow;
  }

  /** Whether a message on `topic` may be delivered to this client (read permission). */
  canRead(topic: string): boolean {
    const cached = this.readCache.get(topic);
    if (cached !== undefined) return cached;
    let result = this.defaultAllow;
    for (const rule of this.rules) {
      if (rule.action === 'publish') continue;
      if (rule.all || topicMatches(rule.topic, topic)) {
        result = rule.allow;
        break;
      }
    }
    if (this.readCache.size >= CACHE_MAX) this.readCache = new Map();
    this.readCache.set(topic, result);
    return result;
  }
}

/** The rules that apply to one connection, substituted. */
export function aclFor(rules: readonly AclRuleInput[], defaultPolicy: AclDefault, who: Identity): ClientAcl {
  const out: Compiled[] = [];
  for (const r of rules) {
    if (r.username !== undefined && r.username !== who.username) continue;
    if (r.clientId !== undefined && r.clientId !== who.clientId) continue;
    if (r.anonymous && who.username !== null) continue;
    let topic = r.topic;
    let unsafe = false;
    if (topic.includes('%u')) {
      if (who.username === null) continue; // a per-user rule does not apply to anonymous connections
      if (!safeValue(who.username)) unsafe = true;
      else topic = topic.replaceAll('%u', who.username);
    }
    if (topic.includes('%c')) {
      if (!safeValue(who.clientId)) unsafe = true;
      else topic = topic.replaceAll('%c', who.clientId);
    }
    if (unsafe) {
      // An allow that cannot be substituted grants nothing; a deny that cannot denies everything it could.
      if (r.allow) continue;
      out.push({ action: r.action, topic, allow: false, all: true });
      continue;
    }
    out.push({ action: r.action, topic, allow: r.allow, all: false });
  }
  return new ClientAcl(out, defaultPolicy === 'allow');
}

/** Whether any rule depends on who the client is (else one ClientAcl serves every connection). */
export function aclIsPerClient(rules: readonly AclRuleInput[]): boolean {
  return rules.some((r) => r.username !== undefined || r.clientId !== undefined || r.anonymous || r.topic.includes('%u') || r.topic.includes('%c'));
}

/** Allows nothing: a connection's ACL until authentication settles. */
export const DENY_ALL = new ClientAcl([], false);
