import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// CI asks for a JSON report too, to print one summary line for both Node versions.
const jsonReport = process.env.CORRAL_TEST_REPORT;

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks',
    reporters: jsonReport ? ['default', ['json', { outputFile: jsonReport }]] : ['default'],
  },
});
