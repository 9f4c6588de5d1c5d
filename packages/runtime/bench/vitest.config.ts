import { defineConfig } from 'vitest/config';
import root from '../../../vitest.config.js';

// Speed measurements of the runtime, kept out of the test suite (no timed assertions in unit tests).
// Run: npx vitest run --config packages/runtime/bench/vitest.config.ts
export default defineConfig({
  ...root,
  test: { ...root.test, include: ['packages/runtime/bench/**/*.bench.ts'], testTimeout: 600_000 },
});
