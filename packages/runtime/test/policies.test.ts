import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { FullPolicy } from '@kvfold/policy-baselines';
import { CaMPolicy } from '@kvfold/policy-cam';
import { H2OPolicy } from '@kvfold/policy-h2o';
import { KVMergerPolicy } from '@kvfold/policy-kvmerger';
import type { KVCachePolicy, KVKernels } from '@kvfold/core';
import { Session, byteTokenizer, createModel, generate, randomWeights, referenceForward, type Model } from '../src/index.js';
import { tinyConfig } from './helpers/models.js';
import { bridgeKernels, maxAbsDiff, useEngine } from './helpers/tf.js';

/**
 * Budget semantics asserted here (ratio budgets refer to the prompt length):
 * - H2O and CaM compress the prompt to the budget at prefill and evict back to it at every decode step,
 *   so the cache never holds more than `budget` slots after a policy call.
 * - KVMerger (prefill-only by default, as in the paper) compresses the prompt to the budget and then
 *   lets the cache grow by one slot per decoded token; with `decodeInterval: N` it re-merges to the
 *   budget whenever the cache exceeds `budget + N`, so it never holds more than `budget + N` slots.
 */
interface Case {
  readonly name: string;
  readonly make: () => KVCachePolicy;
  /** Largest length allowed after the policy call of decode step `step` (1-based). */
  readonly bound: (budget: number, step: number) => number;
  /** Merges instead of evicting: each head's counts still add up to the prompt length after prefill. */
  readonly merges?: boolean;
}

const INTERVAL = 3;
const cases: Case[] = [
  { name: 'h2o', make: () => new H2OPolicy(), bound: (b) => b },
  { name: 'cam', make: () => new CaMPolicy(), bound: (b) => b },
  { name: 'cam (window evict, expected gate)', make: () => new CaMPolicy({ evict: 'window', sink: 2, gate: 'expected', mergeBudget: 4 }), bound: (b) => b },
  { name: 'kvmerger (prefill only)', make: () => new KVMergerPolicy(), bound: (b, step) => b + step, merges: true },
  { name: `kvmerger (decodeInterval ${INTERVAL})`, make: () => new KVMergerPolicy({ decodeInterval: INTERVAL }), bound: (b) => b + INTERVAL, merges: true },
];

const tfjsSrc = fileURLToPath(new URL('../../backend-tfjs/src/index.ts', import.meta.url));

async function kernelSets(): Promise<[string, KVKernels<tf.Tensor>][]> {
  const sets: [string, KVKernels<tf.Tensor>][] = [['reference kernels bridged to tfjs', bridgeKernels()]];
  if (existsSync(tfjsSrc)) {
    const mod = (await import('@kvfold/backend-tfjs')) as { createTfjsKernels?: (o?: { engine?: string }) => Promise<KVKernels<tf.Tensor>> };
    if (mod.createTfjsKernels) sets.push(['@kvfold/backend-tfjs (cpu)', await mod.createTfjsKernels({ engine: 'cpu' })]);
  }
  return sets;
}

const config = tinyConfig({ eos_token_id: null });
const weights = randomWeights(config, 90, 0.5);
// A prompt with repeats, so adjacent keys are similar somewhere and KVMerger has runs to merge.
const prompt = [5, 9, 9, 9, 30, 31, 31, 2, 2, 2, 2, 44, 17, 17, 60, 61, 62, 3, 3, 8, 8, 8, 40, 41];
const BUDGET = 0.5;
const STEPS = 8;

describe('policies inside generation at a 50% budget', async () => {
  beforeAll(async () => {
    expect(await useEngine('cpu')).toBe(true);
  });
  await useEngine('cpu');
  const sets = await kernelSets();

  for (const [kernelsName, kernels] of sets) {
    describe(kernelsName, () => {
      let model: Model;
      beforeAll(() => {
        model = createModel({ config, weights, kernels, tokenizer: byteTokenizer() });
      });

      it.each(cases)('$name: the cache stays within its bound, positions stay true, decode matches the reference over the compressed cache', async (c) => {
        const before = tf.memory().numTensors;
        const s = new Session(model, { policy: c.make(), budget: BUDGET, seed: 1 });
        let logits = await s.prefill(prompt);
        const budget = s.cache.budget!;
        expect(budget).toBe(12);
        expect(s.cache.lengths()).toEqual([budget, budget]);
        if (c.merges) {
          for (const layer of await s.cache.snapshot()) {
            const L = layer.counts.shape[1]!;
            for (let h = 0; h < 2; h++) expect(layer.counts.data.subarray(h * L, (h + 1) * L).reduce((a, b) => a + b, 0)).toBe(prompt.length);
          }
        }
        for (let step = 1; step <= STEPS; step++) {
          const caches = await s.cache.snapshot();
          const token = argmax(logits);
          logits = await s.decode(token);
          // The decode attended over exactly the compressed cache plus the new token at its true position.
          const ref = referenceForward(config, weights, [token], { caches, positions: [prompt.length + step - 1] });
          expect(maxAbsDiff(logits, ref.logits)).toBeLessThan(1e-4);
          for (const len of s.cache.lengths()) expect(len).toBeLessThanOrEqual(c.bound(budget, step));
          expect(s.cache.position).toBe(prompt.length + step);
        }
        for (const layer of await s.cache.snapshot()) {
          const [H, L] = layer.positions.shape as [number, number];
          for (let h = 0; h < H; h++) {
            const row = Array.from(layer.positions.data.subarray(h * L, (h + 1) * L));
            for (let i = 1; i < row.length; i++) expect(row[i]!).toBeGreaterThan(row[i - 1]!);
            expect(row[row.length - 1]).toBe(prompt.length + STEPS - 1);
            expect(row[0]).toBeGreaterThanOrEqual(0);
          }
          const total = layer.counts.data.reduce((a, b) => a + b, 0);
          expect(total).toBeLessThanOrEqual(H * (prompt.length + STEPS));
        }
        s.dispose();
        expect(tf.memory().numTensors).toBe(before);
      });

      it.each(cases)('$name: generate() reports a smaller cache than the full policy', async (c) => {
        const full = await generate({ model, prompt, maxNewTokens: STEPS, policy: new FullPolicy(), budget: BUDGET });
        const r = await generate({ model, prompt, maxNewTokens: STEPS, policy: c.make(), budget: BUDGET, seed: 2 });
        expect(r.tokens).toHaveLength(STEPS);
        expect(r.cache.budget).toBe(12);
        expect(r.cache.finalBytes).toBeLessThan(full.cache.finalBytes);
        // The peak is the uncompressed prompt (every layer holds it before prefill compresses); the full
        // cache keeps growing past it.
        const slotBytes = 2 * 8 * 4 + 3 * 4;
        expect(r.cache.peakBytes).toBe(2 * 2 * prompt.length * slotBytes);
        expect(full.cache.peakBytes).toBe(2 * 2 * (prompt.length + STEPS - 1) * slotBytes);
        for (const len of r.cache.lengths) expect(len).toBeLessThanOrEqual(c.bound(12, STEPS - 1));
      });
    });
  }

  it('the full policy and no policy generate the same tokens', async () => {
    const model = createModel({ config, weights, kernels: sets[0]![1], tokenizer: byteTokenizer() });
    const a = await generate({ model, prompt, maxNewTokens: 6 });
    const b = await generate({ model, prompt, maxNewTokens: 6, policy: new FullPolicy(), budget: 0.25 });
    expect(b.tokens).toEqual(a.tokens);
    expect(b.cache.lengths).toEqual(a.cache.lengths);
    model.dispose();
  });
});

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}
