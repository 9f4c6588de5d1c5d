import { readdirSync, existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

// Tests run against the TypeScript sources of every workspace package, so no build is needed first.
const alias: Record<string, string> = {};
for (const dir of ['packages', 'examples']) {
  for (const entry of readdirSync(resolve(import.meta.dirname, dir))) {
    const pkgFile = resolve(import.meta.dirname, dir, entry, 'package.json');
    const src = resolve(import.meta.dirname, dir, entry, 'src/index.ts');
    if (!existsSync(pkgFile) || !existsSync(src)) continue;
    const name = (JSON.parse(readFileSync(pkgFile, 'utf8')) as { name: string }).name;
    alias[name] = src;
  }
}

export default defineConfig({
  resolve: { alias },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The JSON report lets .ci/run print a one-line summary CI can read.
    reporters: ['default', 'json'],
    outputFile: { json: '.tmp/vitest-report.json' },
  },
});
