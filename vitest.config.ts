import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // GPU tests share one software adapter on a 2-core machine: files run in parallel
    // processes, but few of them, so lavapipe is not oversubscribed.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The plain closing line `N passed, N failed` that CI reads, after vitest's own report.
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
