import { describe, expect, it } from 'vitest';
import { formatGenerate, runGenerate } from '@kvfold/example-generate';

// The weights are retrained in the background, so this checks what the example does, never what the
// model answers.
describe('generate example', () => {
  it('answers with the full cache and with KVMerger at 35%, reporting both caches', async () => {
    const r = await runGenerate({ length: 256, maxNewTokens: 4, engine: 'wasm' });
    expect(r.key).toMatch(/^\d{5}$/);
    expect(r.promptTokens).toBe(257); // BOS + 256 bytes
    expect(r.engine).toMatch(/wasm/);
    const [full, merged] = r.answers;
    for (const a of r.answers) {
      expect(typeof a.text).toBe('string');
      expect(a.correct).toBe(a.text.trim().startsWith(r.key));
      expect(a.result.tokens.length).toBeGreaterThan(0);
      expect(a.result.tokens.length).toBeLessThanOrEqual(4);
    }
    const fed = (a: typeof full) => a.result.timings.decodeSteps;
    // Full cache: every prompt token and every decoded token fed back, in each of the 3 layers.
    expect(full.result.cache.lengths).toEqual([0, 1, 2].map(() => 257 + fed(full)));
    // KVMerger merges the prompt to 35% at prefill (round(0.35 * 257) = 90 slots) and only appends afterwards.
    expect(merged.result.cache.budget).toBe(90);
    expect(merged.result.cache.lengths).toEqual([0, 1, 2].map(() => 90 + fed(merged)));
    expect(merged.result.cache.positions).toBe(257 + fed(merged));
    expect(merged.result.cache.peakBytes).toBeLessThanOrEqual(full.result.cache.peakBytes);
    expect(formatGenerate(r)).toContain(`the key is ${r.key}`);
  });
});
