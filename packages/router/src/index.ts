export type { NodeHandlers, Router } from './contract.ts';
export type * from './types.ts';
export { MemoryCluster, MemoryRouter } from './memory-router.ts';
export { TopicTrie } from './trie.ts';
export { isValidTopicFilter, isValidTopicName, parseSharedFilter, topicMatches } from './topic.ts';
export type { SharedFilter } from './topic.ts';
