import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Real VMs and 64-process runs share 2 cores; keep files from starving each other.
    maxWorkers: 2,
  },
});
