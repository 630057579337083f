export type { NodeHandlers, Router } from './contract.ts';
export type * from './types.ts';
export { MemoryCluster, MemoryRouter } from './memory-router.ts';
export { RedisRouter, RouterUnavailableError } from './redis-router.ts';
export type { RedisRouterOptions, RedisRouterStatus, RouterLogger } from './redis-router.ts';
export { NEVER_EXPIRES, sessionExpiresAt } from './session-expiry.ts';
export { TopicTrie } from './trie.ts';
export { isValidTopicFilter, isValidTopicName, parseSharedFilter, topicMatches } from './topic.ts';
export type { SharedFilter } from './topic.ts';
