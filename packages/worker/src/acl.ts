import type { AclRule } from '@starling/core/config.ts';
import { topicMatches } from '@starling/router';

/**
 * Topic authorization from the config's rules: the first rule whose action and filter match decides;
 * no matching rule allows. A subscribe rule matches a requested filter when the rule's filter covers it
 * (literally equal, or matching it as a topic).
 */
export class Acl {
  private readonly rules: AclRule[];

  constructor(rules: AclRule[]) {
    this.rules = rules;
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }

  canPublish(topic: string): boolean {
    for (const rule of this.rules) {
      if (rule.action === 'subscribe') continue;
      if (topicMatches(rule.topic, topic)) return rule.allow;
    }
    return true;
  }

  canSubscribe(filter: string): boolean {
    for (const rule of this.rules) {
      if (rule.action === 'publish') continue;
      if (rule.topic === filter || topicMatches(rule.topic, filter)) return rule.allow;
    }
    return true;
  }
}
