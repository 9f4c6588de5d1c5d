import type { KernelImplementation, LayerCache, MergeIntoNeighboursCall } from '@kvfold/core';
import type { SessionCache } from '../cache.js';
import { attr, GraphBuilder, type FunctionDef } from '../graph.js';
import type { OnnxTensor } from '../tensor.js';
import { gatherRows, LAYER_FIELDS, LAYER_OUTPUTS, layerFeeds, layerInputs, layerOutputs, layerResult } from './gather.js';

/**
 * `ai.kvfold::MergeIntoNeighbours(keys, values, positions, counts, scores, keep, source, target_start,
 *  target_count, gate) -> (keys, values, positions, counts, scores)`: CaM's value merge.
 *
 * Body: gather the kept slots; then a difference array — `+gate * v / targetCount` at `targetStart`,
 * `-gate * v / targetCount` at `targetStart + targetCount` (ScatterND, `reduction='add'`: sources share
 * targets) — and a CumSum along the kept slots. Both run in float64, so the running sum cancels exactly
 * enough for float32 results; memory is O(sources * headDim), whatever the window length.
 */
export const MERGE_INTO_NEIGHBOURS: FunctionDef = {
  name: 'MergeIntoNeighbours',
  inputs: ['keys', 'values', 'positions', 'counts', 'scores', 'keep', 'source', 'target_start', 'target_count', 'gate'],
  outputs: ['keys_out', 'values_out', 'positions_out', 'counts_out', 'scores_out'],
  body(b) {
    const [, base] = gatherRows(b, 'keep', LAYER_FIELDS, ['keys_out', 'values_kept', 'positions_out', 'counts_out', 'scores_out']);
    const [src] = gatherRows(b, 'source', ['values']);
    const H = b.shape('keep', 0, 1);
    const K = b.shape('keep', 1, 2);
    const D = b.shape('keys', 2, 3);
    const tcF = b.cast('target_count', 'float32');
    const zero = b.f32(0, true);
    const coef = b.op('Where', [b.op('Greater', [tcF, zero]), b.op('Div', ['gate', b.op('Max', [tcF, b.f32(1, true)])]), zero]);
    const contrib = b.cast(b.op('Mul', [src!, b.unsqueeze(coef, [2])]), 'float64'); // [H, S, D]
    const tc = b.cast('target_count', 'int64');
    const ts = b.cast('target_start', 'int64');
    // A source with no target adds and removes 0 at slot 0 (its start may lie anywhere).
    const some = b.op('Greater', [tc, b.i64(0, true)]);
    const zero64 = b.i64(0, true);
    const first = b.op('Where', [some, ts, zero64]);
    const stop = b.op('Where', [some, b.op('Add', [ts, tc]), zero64]);
    const j = b.concat([first, stop], 1); // [H, 2S]
    const hs = b.op('Expand', [b.unsqueeze(b.op('Range', [zero64, b.squeeze(H, [0]), b.i64(1, true)]), [1]), b.shape(j)]);
    const idx = b.concat([b.unsqueeze(hs, [2]), b.unsqueeze(j, [2])], 2); // [H, 2S, 2]: (head, slot)
    const upd = b.concat([contrib, b.op('Neg', [contrib])], 1); // [H, 2S, D]
    const K1 = b.op('Add', [K, b.i64([1])]);
    const diff = b.op('ScatterND', [b.fill(b.concat([H, K1, D], 0), 'float64', 0), idx, upd], { reduction: attr.string('add') });
    const run = b.op('CumSum', [diff, b.i64(1, true)]);
    const delta = b.cast(b.op('Slice', [run, b.i64([0]), K, b.i64([1])]), 'float32');
    b.opN('Add', [base!, delta], {}, { names: ['values_out'] });
  },
};

/** The mergeIntoNeighbours model: one `ai.kvfold::MergeIntoNeighbours` node. */
export function mergeIntoNeighboursModel(): Uint8Array {
  const g = new GraphBuilder('mergeIntoNeighbours');
  layerInputs(g);
  g.input('keep', 'int32', ['H', 'K']);
  g.input('source', 'int32', ['H', 'S']);
  g.input('target_start', 'int32', ['H', 'S']);
  g.input('target_count', 'int32', ['H', 'S']);
  g.input('gate', 'float32', ['H', 'S']);
  g.custom(
    MERGE_INTO_NEIGHBOURS,
    ['keys', 'values', 'positions', 'counts', 'scores', 'keep', 'source', 'target_start', 'target_count', 'gate'],
    {},
    LAYER_OUTPUTS,
  );
  layerOutputs(g, 'K');
  return g.build();
}

/** CaM value merge (KVKernels.mergeIntoNeighbours); core has checked the plan. */
export function mergeIntoNeighbours(cache: SessionCache): KernelImplementation<MergeIntoNeighboursCall<OnnxTensor>, LayerCache<OnnxTensor>> {
  return { run: (call) => merge(cache, call) };
}

function merge(cache: SessionCache, { layer, plan }: MergeIntoNeighboursCall<OnnxTensor>): LayerCache<OnnxTensor> {
  const r = cache.get('mergeIntoNeighbours', 'float32', mergeIntoNeighboursModel).run(
    {
      ...layerFeeds(layer),
      keep: plan.keep,
      source: plan.source,
      target_start: plan.targetStart,
      target_count: plan.targetCount,
      gate: plan.gate,
    },
    LAYER_OUTPUTS,
  );
  return layerResult(r);
}
