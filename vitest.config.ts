import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/helpers/fast-check-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Real TCG guests and 64-process runs share 2 cores: one file at a time keeps them from starving each
    // other (a guest that boots in 3 s alone took over 60 s beside three others).
    fileParallelism: false,
  },
});
