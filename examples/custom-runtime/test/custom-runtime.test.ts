import { describe, expect, it } from 'vitest';
import { createRng, hostLayer, hostTensor, type PolicyContext } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { attend, runCustomRuntime, toyShape } from '@kvfold/example-custom-runtime';

describe('custom-runtime example', () => {
  it('its hand-written observation is exactly what kernels.observe computes (GQA mean, causal, proportional)', async () => {
    const k = createReferenceKernels();
    const rng = createRng(1);
    const [H, L, d, n] = [toyShape.kvHeads, 12, toyShape.headDim, 3];
    const r = (m: number) => Float32Array.from({ length: m }, () => rng.next() * 2 - 1);
    // Out-of-order-free but gapped positions and merged counts, as after compression.
    const positions = Int32Array.from({ length: H * L }, (_, i) => 2 * (i % L));
    const counts = Int32Array.from({ length: H * L }, (_, i) => 1 + (i % 3));
    const cache = hostLayer({ heads: H, length: L, headDim: d, keys: r(H * L * d), values: r(H * L * d), positions, counts });
    const rows = [r(toyShape.queryHeads * d), r(toyShape.queryHeads * d), r(toyShape.queryHeads * d)];
    const qpos = [9, 15, 19];
    for (const proportional of [false, true]) {
      const mine = attend(cache, rows, qpos, toyShape, proportional);
      const q = new Float32Array(toyShape.queryHeads * n * d);
      rows.forEach((row, i) => { for (let h = 0; h < toyShape.queryHeads; h++) q.set(row.subarray(h * d, (h + 1) * d), (h * n + i) * d); });
      const layer = { keys: cache.keys, values: cache.values, positions: cache.positions, counts: cache.counts, scores: cache.scores };
      const o = k.observe(layer, hostTensor('float32', [toyShape.queryHeads, n, d], q), hostTensor('int32', [n], qpos), { proportional });
      const sums = (await k.toHost(o.attention)).data;
      const last = (await k.toHost(o.lastAttention)).data;
      mine.sums.forEach((x, i) => expect(x).toBeCloseTo(sums[i]!, 5));
      mine.last.forEach((x, i) => expect(x).toBeCloseTo(last[i]!, 5));
      // Slots at positions 20 and 22 come after every query: causality by true position, not slot index.
      expect(mine.sums[L - 1]).toBeCloseTo(0, 6);
    }
  });

  it('with the full policy the compressed run equals the uncompressed one', async () => {
    const r = await runCustomRuntime({ policy: 'full', promptLength: 24, steps: 5 });
    expect(r.steps.map((s) => s.slots)).toEqual([25, 26, 27, 28, 29]);
    for (const s of r.steps) {
      expect(s.outputError).toBe(0);
      expect(s.sameToken).toBe(true);
    }
  });

  it('h2o keeps the cache at the budget through decoding, at true positions, with the context a runtime must pass', async () => {
    const calls: { phase: string; ctx: PolicyContext<unknown>; lengths: number[] }[] = [];
    const r = await runCustomRuntime({
      policy: 'h2o',
      promptLength: 40,
      steps: 6,
      budget: 0.5,
      onPolicyCall: (phase, ctx, observed) => calls.push({ phase, ctx, lengths: [...ctx.kernels.shapeOf(observed.attention!)] }),
    });
    expect(r.budget).toBe(20);
    expect(r.prefillSlots).toBe(20);
    expect(r.steps.map((s) => s.slots)).toEqual([20, 20, 20, 20, 20, 20]);
    expect(r.finalPositions.at(-1)).toBe(45);
    expect(new Set(r.finalPositions).size).toBe(20);
    expect(calls.map((c) => [c.phase, c.ctx.step, c.ctx.newTokens, c.ctx.budget, c.ctx.promptLength])).toEqual([
      ['prefill', 0, 40, 20, 40],
      ...[1, 2, 3, 4, 5, 6].map((st) => ['step', st, 1, 20, 40]),
    ]);
    // Attention is observed over the grown cache: budget + the new token at each step.
    expect(calls.slice(1).every((c) => c.lengths.join() === '2,21')).toBe(true);
    expect(r.steps.every((s) => s.outputError > 0 && Number.isFinite(s.outputError))).toBe(true);
  });

  it('kvmerger merges at prefill; scaled values with plain attention, or unscaled with proportional attention', async () => {
    const paper = await runCustomRuntime({ policy: 'kvmerger', promptLength: 48, steps: 3, budget: 0.35 });
    expect(paper.prefillSlots).toBe(17);
    expect(paper.steps.map((s) => s.slots)).toEqual([18, 19, 20]);
    expect(paper.steps[0]!.mergedSlots).toBeGreaterThan(0);
    const proportional = await runCustomRuntime({ policy: 'kvmerger', policyOptions: { valueScale: 'none' }, proportional: true, promptLength: 48, steps: 3, budget: 0.35 });
    expect(proportional.steps[0]!.mergedSlots).toBe(paper.steps[0]!.mergedSlots);
    for (const r of [paper, proportional]) expect(r.steps.every((s) => Number.isFinite(s.outputError) && s.outputError > 0)).toBe(true);
  });
});
