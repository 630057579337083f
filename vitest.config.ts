import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Broker processes and redis-servers are real: keep the 2-core machine from oversubscribing.
    maxWorkers: 2,
  },
});
