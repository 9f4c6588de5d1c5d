import { describe, expect, it } from 'vitest';
import { formatTransformersJs, runTransformersJs } from '@kvfold/example-transformers-js';

// Checks what the example does, never what the model answers.
describe('transformers-js example', () => {
  it('answers with the full cache and with KVMerger at 35% through transformers.js, reporting both caches', async () => {
    const r = await runTransformersJs({ length: 256, maxNewTokens: 4 });
    expect(r.key).toMatch(/^\d{5}$/);
    expect(r.promptTokens).toBe(257); // BOS + 256 bytes
    const [full, merged] = r.answers;
    for (const a of r.answers) {
      expect(a.correct).toBe(a.text.trim().startsWith(r.key));
      expect(a.result.tokens.length).toBeGreaterThan(0);
      expect(a.result.cache.zeroCopy).toBe(true);
    }
    const fed = (a: typeof full) => a.result.timings.decodeSteps;
    expect(full.result.cache.lengths).toEqual([0, 1, 2].map(() => 257 + fed(full)));
    expect(merged.result.cache.budget).toBe(90);
    expect(merged.result.cache.lengths).toEqual([0, 1, 2].map(() => 90 + fed(merged)));
    expect(merged.result.cache.finalBytes).toBeLessThan(full.result.cache.finalBytes);
    expect(formatTransformersJs(r)).toContain(`the key is ${r.key}`);
  });
});
