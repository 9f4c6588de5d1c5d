import { describe, it, expect, afterAll } from 'vitest';
import { hostLayer, hostTensor, layerFromHost, type HostTensor } from '@kvfold/core';
import type { OnnxKernels, OnnxTensor } from '../src/index.js';
import { expectClose, layerHost, variants } from './helpers.js';

/**
 * Small cases worked out by hand (the arithmetic is in the comments), on every kernel path. They pin the
 * formulas themselves, where the parity tests only prove agreement with the reference backend.
 */
const f32 = (shape: number[], d: number[]): HostTensor => hostTensor('float32', shape, d);
const i32 = (shape: number[], d: number[]): HostTensor => hostTensor('int32', shape, d);

for (const variant of variants()) {
  describe(`hand-computed cases: ${variant.name}`, () => {
    const k: OnnxKernels = variant.make();
    afterAll(() => k.release());
    const host = async (t: OnnxTensor) => k.toHost(t);

    it('adjacentCosine: [1,0]·[1,1] = 1/√2, and 0 next to a zero key', async () => {
      const cos = k.adjacentCosine(k.fromHost(f32([1, 3, 2], [1, 0, 1, 1, 0, 0])));
      expectClose(await host(cos), f32([1, 2], [0.70710678, 0]), 'adjacentCosine');
    });

    it('topK and accumulateTopK: window [1, 4), ties to the lower slot', async () => {
      const s = k.fromHost(f32([1, 5], [9, 0.5, 0.7, 0.5, 9]));
      expect(Array.from((await host(k.topK(s, 2, 1, 4))).data)).toEqual([1, 2]); // 0.7 then the tie 0.5 at slot 1 (not 3)
      const fused = k.accumulateTopK(s, k.fromHost(f32([1, 5], [0, 0.1, 0, 0.3, 0])), 1, 1, 4);
      expectClose(await host(fused.scores), f32([1, 5], [9, 0.6, 0.7, 0.8, 9]), 'accumulated');
      expect(Array.from((await host(fused.index)).data)).toEqual([3]); // 0.5 + 0.3 = 0.8 beats 0.7
    });

    it('mergeSegments: Gaussian weights around the pivot, count and none value scales', async () => {
      // Head of 3 slots, keys 0, 2, 5; values 1, 3, 10; counts 1, 1, 2. Segments {0, 1} (pivot 0, sigma 2) and {2}.
      // g1 = exp(-(2 - 0)^2 / (2 * 2^2)) = exp(-0.5) = 0.60653066; w = [1, g1] / (1 + g1) = [0.62245933, 0.37754067].
      // key 0 = 2 * w1 = 0.75508134. count: value 0 = (1 + 1) * (w0 * 1 / 1 + w1 * 3 / 1) = 3.51016268;
      // value 1 = 2 * (1 * 10 / 2) = 10. none: value 0 = w0 * 1 + w1 * 3 = 1.75508134, value 1 = 10.
      const layer = layerFromHost(
        k,
        hostLayer({ heads: 1, length: 3, headDim: 1, keys: [0, 2, 5], values: [1, 3, 10], positions: [4, 5, 7], counts: [1, 1, 2], scores: [0.25, 0.5, 1] }),
      );
      const plan = { segment: k.fromHost(i32([1, 3], [0, 0, 1])), pivot: k.fromHost(i32([1, 2], [0, 2])), sigma: k.fromHost(f32([1, 2], [2, 1])) };
      const count = await layerHost(k, k.mergeSegments(layer, { ...plan, valueScale: 'count' }));
      expectClose(count.keys!, f32([1, 2, 1], [0.75508134, 5]), 'keys');
      expectClose(count.values!, f32([1, 2, 1], [3.51016268, 10]), 'values (count)');
      expectClose(count.positions!, i32([1, 2], [4, 7]), 'positions');
      expectClose(count.counts!, i32([1, 2], [2, 2]), 'counts');
      expectClose(count.scores!, f32([1, 2], [0.75, 1]), 'scores');
      const none = await layerHost(k, k.mergeSegments(layer, { ...plan, valueScale: 'none' }));
      expectClose(none.values!, f32([1, 2, 1], [1.75508134, 10]), 'values (none)');
    });

    it('mergeIntoNeighbours: gated values spread over their target windows', async () => {
      // values 1, 2, 3, 4; keep slots 0 and 2 -> [1, 3]. Source 1 (v 2, gate 1) over both targets: +1 each -> [2, 4].
      // Source 3 (v 4, gate 0.5) over target 1 only: +2 -> [2, 6]. Keys, positions, counts, scores are gathered.
      const layer = layerFromHost(k, hostLayer({ heads: 1, length: 4, headDim: 1, keys: [10, 20, 30, 40], values: [1, 2, 3, 4], positions: [0, 1, 2, 3] }));
      const out = await layerHost(
        k,
        k.mergeIntoNeighbours(layer, {
          keep: k.fromHost(i32([1, 2], [0, 2])),
          source: k.fromHost(i32([1, 2], [1, 3])),
          targetStart: k.fromHost(i32([1, 2], [0, 1])),
          targetCount: k.fromHost(i32([1, 2], [2, 1])),
          gate: k.fromHost(f32([1, 2], [1, 0.5])),
        }),
      );
      expectClose(out.values!, f32([1, 2, 1], [2, 6]), 'values');
      expectClose(out.keys!, f32([1, 2, 1], [10, 30]), 'keys');
      expectClose(out.positions!, i32([1, 2], [0, 2]), 'positions');
    });

    it('observe: causal softmax, proportional attention and GQA reduction', async () => {
      // Keys 1 and 2 at positions 0 and 1, one query q = 1 at position 1, scale 1: softmax(1, 2) = [1, e] / (1 + e)
      // = [0.26894142, 0.73105858]. Proportional with counts [1, 2]: logits 1 and 2 + ln 2 -> [1, 2e] / (1 + 2e) =
      // [0.15536240, 0.84463760]. A second query at position 0 sees slot 0 only: [1, 0].
      const layer = layerFromHost(k, hostLayer({ heads: 1, length: 2, headDim: 1, keys: [1, 2], values: [0, 0], positions: [0, 1], counts: [1, 2] }));
      const one = k.observe(layer, k.fromHost(f32([1, 1, 1], [1])), k.fromHost(i32([1], [1])), { scale: 1 });
      expectClose(await host(one.attention), f32([1, 2], [0.26894142, 0.73105858]), 'plain');
      const prop = k.observe(layer, k.fromHost(f32([1, 1, 1], [1])), k.fromHost(i32([1], [1])), { scale: 1, proportional: true });
      expectClose(await host(prop.attention), f32([1, 2], [0.1553624, 0.8446376]), 'proportional');
      const two = k.observe(layer, k.fromHost(f32([1, 2, 1], [1, 1])), k.fromHost(i32([2], [0, 1])), { scale: 1 });
      expectClose(await host(two.attention), f32([1, 2], [1.26894142, 0.73105858]), 'sum over queries');
      expectClose(await host(two.lastAttention), f32([1, 2], [0.26894142, 0.73105858]), 'last query');
      // Two query heads share the kv head: q = 1 gives [0.269, 0.731], q = 0 gives [0.5, 0.5].
      const gqa = (groupReduction: 'mean' | 'max' | 'sum') => k.observe(layer, k.fromHost(f32([2, 1, 1], [1, 0])), k.fromHost(i32([1], [1])), { scale: 1, groupReduction });
      expectClose(await host(gqa('mean').attention), f32([1, 2], [0.38447071, 0.61552929]), 'gqa mean');
      expectClose(await host(gqa('max').attention), f32([1, 2], [0.5, 0.73105858]), 'gqa max');
      expectClose(await host(gqa('sum').attention), f32([1, 2], [0.76894142, 1.23105858]), 'gqa sum');
    });
  });
}
