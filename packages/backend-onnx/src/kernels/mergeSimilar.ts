import { mergeSimilarKernel, referenceOnHost, type HostTensor, type KernelImplementation, type MergeSimilarCall, type SimilarMerge } from '@kvfold/core';
import { ort } from '../ort.js';
import type { SessionCache } from '../cache.js';
import { attr, GraphBuilder } from '../graph.js';
import { float32Scalar, hostView, int64Scalar, type OnnxTensor } from '../tensor.js';
import { ADJACENT_COSINE } from './adjacentCosine.js';
import { LAYER_OUTPUTS, layerFeeds, layerInputs, layerOutputTensors, layerResult, outputTensor } from './gather.js';
import { LINK_SEGMENTS } from './linkSegments.js';
import { MERGE_SEGMENTS } from './mergeSegments.js';
import { SELECT_TOP_K } from './topK.js';

/**
 * The mergeSimilar model for one value scale: the chain the kernel is defined as, in one graph, so one session
 * run does it all and the plan never reaches the host. `ai.kvfold::AdjacentCosine`, the link mask (stock ops),
 * `ai.kvfold::SelectTopK`, `ai.kvfold::LinkSegments` and `ai.kvfold::MergeSegments`, each the op the separate
 * kernels run (native where the library is loaded, else its function body), so its results are theirs. Not a
 * fused op: the keys are still read once by the cosines and once by the merge.
 */
export function mergeSimilarModel(valueScale: 'count' | 'none'): Uint8Array {
  const g = new GraphBuilder(`mergeSimilar_${valueScale}`);
  layerInputs(g);
  g.input('protect', 'int32', ['H', 'P']);
  g.input('count', 'int64', [1]);
  g.input('floor', 'float32', [1]);
  g.input('sigma', 'float32', [1]);
  const [cos] = g.custom(ADJACENT_COSINE, ['keys'], {});
  const H = g.shape('scores', 0, 1);
  const L = g.shape('scores', 1, 2);
  // The protected slots as flags, then a link blocked when either of its slots is.
  const protect = g.cast('protect', 'int64');
  const flags = g.op('ScatterElements', [g.fill(g.concat([H, L], 0), 'int32', 0), protect, g.fill(g.shape(protect), 'int32', 1)], { axis: attr.int(1) });
  const blocked = g.op('Add', [g.slice(flags, [0], [-1], [1]), g.slice(flags, [1], [2 ** 62], [1])]);
  const free = g.op('Equal', [blocked, g.i32(0, true)]);
  // The cosines are clamped to [-1, 1] or NaN, and NaN compares false: `>= floor` is the reference's "finite and
  // at least minSimilarity" (floor is the smallest float32 at or above it, see floorOf).
  const ok = g.op('And', [free, g.op('GreaterOrEqual', [cos!, 'floor'])]);
  const ranked = g.op('Where', [ok, cos!, g.f32(Number.NaN, true)]);
  g.opN('Cast', [g.reduce('ReduceSum', g.cast(ok, 'int32'), [1], false)], { to: attr.int(6) }, { names: ['eligible'] });
  const n1 = g.op('Sub', [L, g.i64([1])]);
  const [links] = g.custom(SELECT_TOP_K, [ranked, 'count', g.i64([0]), n1], {});
  // The lowest merged cosine; a +Infinity column keeps the minimum defined when no link merges.
  const chosen = g.op('GatherElements', [cos!, g.cast(links!, 'int64')], { axis: attr.int(1) });
  const padded = g.concat([chosen, g.fill(g.concat([H, g.i64([1])], 0), 'float32', Infinity)], 1);
  g.opN('Identity', [g.reduce('ReduceMin', padded, [1], false)], {}, { names: ['lowest'] });
  const [segment, pivot] = g.custom(LINK_SEGMENTS, [links!, 'scores'], {});
  const sigma = g.op('Expand', ['sigma', g.concat([H, g.op('Sub', [L, 'count'])], 0)]);
  g.custom(MERGE_SEGMENTS, ['keys', 'values', 'positions', 'counts', 'scores', segment!, pivot!, sigma], { value_scale: attr.int(valueScale === 'count' ? 1 : 0) }, LAYER_OUTPUTS);
  g.output(LAYER_OUTPUTS[0]!, 'float32', ['H', 'M', 'D']);
  g.output(LAYER_OUTPUTS[1]!, 'float32', ['H', 'M', 'D']);
  g.output(LAYER_OUTPUTS[2]!, 'int32', ['H', 'M']);
  g.output(LAYER_OUTPUTS[3]!, 'int32', ['H', 'M']);
  g.output(LAYER_OUTPUTS[4]!, 'float32', ['H', 'M']);
  g.output('eligible', 'int32', ['H']);
  g.output('lowest', 'float32', ['H']);
  return g.build();
}

/**
 * The smallest float32 at or above `x`: a float32 cosine `c` satisfies `c >= x` (compared in float64, as core's
 * reference does) exactly when `c >= floorOf(x)` in float32.
 */
function floorOf(x: number): number {
  const f = Math.fround(x);
  if (f >= x || Number.isNaN(f)) return f;
  const bits = new Float32Array([f]);
  const i = new Int32Array(bits.buffer);
  // One float32 step towards +Infinity (f is below x, so it is finite and not the largest float32).
  i[0]! += f > 0 ? 1 : f < 0 ? -1 : 0;
  if (f === 0) bits[0] = 1.401298464324817e-45;
  return bits[0]!;
}

/**
 * KVMerger's exact-budget merge (KVKernels.mergeSimilar) as one session run of {@link mergeSimilarModel}; core has
 * checked the plan. With nothing to merge (no link, or fewer than two slots) core's reference runs on the host
 * views (a copy of the layer).
 */
export function mergeSimilar(cache: SessionCache): KernelImplementation<MergeSimilarCall<OnnxTensor>, SimilarMerge<OnnxTensor>> {
  return {
    run: (call) => {
      const { layer, plan, dims } = call;
      const { heads: H, length: L, headDim: D } = dims;
      if (plan.count === 0 || L < 2) {
        const upload = (t: HostTensor): OnnxTensor => new ort.Tensor(t.dtype, t.data, [...t.shape]);
        return referenceOnHost(mergeSimilarKernel, call, { isTensor: (v) => v instanceof ort.Tensor, read: (t) => hostView(t as OnnxTensor), upload }) as SimilarMerge<OnnxTensor>;
      }
      const M = L - plan.count;
      const session = cache.get(`mergeSimilar_${plan.valueScale}`, 'float32', () => mergeSimilarModel(plan.valueScale));
      const into = [...layerOutputTensors(cache.pool, H, M, D), outputTensor(cache.pool, 'int32', [H]), outputTensor(cache.pool, 'float32', [H])];
      const feeds = { ...layerFeeds(layer), protect: plan.protect, count: int64Scalar(plan.count), floor: float32Scalar(floorOf(plan.minSimilarity)), sigma: float32Scalar(plan.sigma) };
      const out = session.run(feeds, [...LAYER_OUTPUTS, 'eligible', 'lowest'], into);
      return { layer: layerResult(out.slice(0, 5)), eligible: out[5]!, lowest: out[6]! };
    },
  };
}
