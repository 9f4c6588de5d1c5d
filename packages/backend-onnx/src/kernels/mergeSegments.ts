import type { KernelImplementation, LayerCache, MergeSegmentsCall } from '@kvfold/core';
import type { SessionCache } from '../cache.js';
import { attr, GraphBuilder, type FunctionDef, type NodeList } from '../graph.js';
import type { OnnxTensor } from '../tensor.js';
import { LAYER_OUTPUTS, layerFeeds, layerInputs, layerOutputs, layerResult } from './gather.js';

/** Scatter-add `[H, L]` `updates` into `[H, O + 1]` zeros at `index` along axis 1 and drop the dump slot `O`. */
function segmentSum(b: NodeList, updates: string, index: string, zerosShape: string, outSlots: string): string {
  const zeros = b.fill(zerosShape, 'float32', 0);
  const acc = b.op('ScatterElements', [zeros, index, updates], { axis: attr.int(1), reduction: attr.string('add') });
  return b.op('Slice', [acc, b.i64([0]), outSlots, b.i64([1])]);
}

/**
 * Scatter-add `[H, L, D]` rows into `[H, O + 1, D]` zeros at (head, segment) pairs `index [H, L, 2]` and drop
 * the dump slot: ScatterND moves whole rows, where ScatterElements would need a `[H, L, D]` int64 index.
 */
function segmentRowSum(b: NodeList, updates: string, index: string, zerosShape: string, outSlots: string): string {
  const acc = b.op('ScatterND', [b.fill(zerosShape, 'float32', 0), index, updates], { reduction: attr.string('add') });
  return b.op('Slice', [acc, b.i64([0]), outSlots, b.i64([1])]);
}

/**
 * `ai.kvfold::MergeSegments(keys, values, positions, counts, scores, segment, pivot, sigma; value_scale)
 *  -> (keys, values, positions, counts, scores)`: KVMerger's Gaussian-kernel merge of runs of slots.
 *
 * Attribute `value_scale`: 1 = `count` (merged value `C * sum w_i v_i / c_i`), 0 = `none` (`sum w_i v_i`).
 *
 * Body: dropped slots (`segment = -1`) are sent to an extra dump slot `O` that is sliced off, so every
 * per-segment sum is one scatter with `reduction='add'` (duplicates are the point here): ScatterND for
 * key and value rows, ScatterElements for per-slot sums.
 */
export const MERGE_SEGMENTS: FunctionDef = {
  name: 'MergeSegments',
  inputs: ['keys', 'values', 'positions', 'counts', 'scores', 'segment', 'pivot', 'sigma'],
  outputs: ['keys_out', 'values_out', 'positions_out', 'counts_out', 'scores_out'],
  attributes: ['value_scale'],
  body(b) {
    const H = b.shape('keys', 0, 1);
    const D = b.shape('keys', 2, 3);
    const O = b.shape('pivot', 1, 2);
    const O1 = b.op('Add', [O, b.i64([1])]);
    const one = b.i64([1]);
    const seg = b.cast('segment', 'int64');
    const dropped = b.op('Less', [seg, b.i64(0, true)]);
    const segD = b.op('Where', [dropped, O, seg]);
    const pivotPad = b.concat([b.cast('pivot', 'int64'), b.fill(b.concat([H, one], 0), 'int64', 0)], 1);
    const sigmaPad = b.concat(['sigma', b.fill(b.concat([H, one], 0), 'float32', 1)], 1);
    // Distance of each member to its segment's pivot key (one GatherND row per slot).
    const pivotIdx = b.op('GatherElements', [pivotPad, segD], { axis: attr.int(1) });
    const pk = b.op('GatherND', ['keys', b.unsqueeze(pivotIdx, [2])], { batch_dims: attr.int(1) });
    const diff = b.op('Sub', ['keys', pk]);
    const sig = b.op('GatherElements', [sigmaPad, segD], { axis: attr.int(1) });
    // ||k_p - k_i||^2 / (2 sigma^2) with the difference divided by sigma before it is squared: squaring first
    // overflows float32 for keys above about 1e19 (Inf / Inf = NaN); scaled, a huge ratio only gives
    // exp(-Inf) = 0, as the reference's float64 does.
    const z = b.op('Div', [diff, b.unsqueeze(sig, [2])]);
    const half = b.op('Mul', [b.reduce('ReduceSum', b.op('Mul', [z, z]), [2], false), b.f32(0.5, true)]);
    const zero = b.f32(0, true);
    // A zero distance gives weight exactly 1 (the pivot).
    const gauss = b.op('Where', [b.op('Equal', [half, zero]), b.f32(1, true), b.op('Exp', [b.op('Neg', [half])])]);
    const g = b.op('Where', [dropped, zero, gauss]);
    const shape2 = b.concat([H, O1], 0);
    const shape3 = b.concat([H, O1, D], 0);
    const gsumPad = b.op('ScatterElements', [b.fill(shape2, 'float32', 0), segD, g], { axis: attr.int(1), reduction: attr.string('add') });
    const gsum = b.op('GatherElements', [gsumPad, segD], { axis: attr.int(1) });
    // 0/0 on dropped slots (their dump sum is 0) is masked out by the Where.
    const w = b.op('Where', [dropped, zero, b.op('Div', [g, gsum])]);
    const heads = b.op('Expand', [b.unsqueeze(b.op('Range', [b.i64(0, true), b.squeeze(H, [0]), b.i64(1, true)]), [1]), b.shape(segD)]);
    const rowIdx = b.concat([b.unsqueeze(heads, [2]), b.unsqueeze(segD, [2])], 2); // [H, L, 2]: (head, segment)
    b.opN('Identity', [segmentRowSum(b, b.op('Mul', ['keys', b.unsqueeze(w, [2])]), rowIdx, shape3, O)], {}, { names: ['keys_out'] });
    // Counts summed in float64, like the reference: exact for every int32 total (float32 is exact only below
    // 2^24), and one scatter serves the value scale too.
    const cD = b.cast('counts', 'float64');
    const cSumPad = b.op('ScatterElements', [b.fill(shape2, 'float64', 0), segD, b.op('Where', [dropped, b.cast(zero, 'float64'), cD])], {
      axis: attr.int(1),
      reduction: attr.string('add'),
    });
    const cSum = b.op('GatherElements', [cSumPad, segD], { axis: attr.int(1) });
    const byCount = b.op('Equal', [b.op('Constant', [], { value_int: attr.ref('value_scale', 'int') }), b.i64(1, true)]);
    // factor = C / c_i when value_scale = 1, exactly 1 when it is 0 (the Where keeps a 0 count's NaN out).
    const factor = b.op('Where', [byCount, b.cast(b.op('Div', [cSum, cD]), 'float32'), b.f32(1, true)]);
    const wv = b.op('Mul', [w, factor]);
    b.opN('Identity', [segmentRowSum(b, b.op('Mul', ['values', b.unsqueeze(wv, [2])]), rowIdx, shape3, O)], {}, { names: ['values_out'] });
    b.opN('GatherElements', ['positions', b.cast('pivot', 'int64')], { axis: attr.int(1) }, { names: ['positions_out'] });
    const cOut = b.op('Slice', [cSumPad, b.i64([0]), O, b.i64([1])]);
    b.opN('Cast', [cOut], { to: attr.int(6) }, { names: ['counts_out'] });
    const sOut = segmentSum(b, b.op('Where', [dropped, zero, 'scores']), segD, shape2, O);
    b.opN('Identity', [sOut], {}, { names: ['scores_out'] });
  },
};

/** The mergeSegments model for one value scale. */
export function mergeSegmentsModel(valueScale: 'count' | 'none'): Uint8Array {
  const g = new GraphBuilder(`mergeSegments_${valueScale}`);
  layerInputs(g);
  g.input('segment', 'int32', ['H', 'L']);
  g.input('pivot', 'int32', ['H', 'O']);
  g.input('sigma', 'float32', ['H', 'O']);
  g.custom(
    MERGE_SEGMENTS,
    ['keys', 'values', 'positions', 'counts', 'scores', 'segment', 'pivot', 'sigma'],
    { value_scale: attr.int(valueScale === 'count' ? 1 : 0) },
    LAYER_OUTPUTS,
  );
  layerOutputs(g, 'O');
  return g.build();
}

/** Collapse runs of consecutive slots into one slot each (KVKernels.mergeSegments); core has checked the plan. */
export function mergeSegments(cache: SessionCache): KernelImplementation<MergeSegmentsCall<OnnxTensor>, LayerCache<OnnxTensor>> {
  return {
    run: ({ layer, plan }) => {
      const session = cache.get(`mergeSegments_${plan.valueScale}`, 'float32', () => mergeSegmentsModel(plan.valueScale));
      return layerResult(session.run({ ...layerFeeds(layer), segment: plan.segment, pivot: plan.pivot, sigma: plan.sigma }, LAYER_OUTPUTS));
    },
  };
}
