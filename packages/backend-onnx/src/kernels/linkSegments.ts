import type { KernelImplementation, LinkSegmentsCall, SegmentPlan } from '@kvfold/core';
import { ort } from '../ort.js';
import type { SessionCache } from '../cache.js';
import { attr, GraphBuilder, type FunctionDef } from '../graph.js';
import type { OnnxTensor } from '../tensor.js';
import { outputTensor } from './gather.js';

/**
 * `ai.kvfold::LinkSegments(links i32[H,C], scores f32[H,L]) -> (segment i32[H,L], pivot i32[H,L-C])`: KVMerger's
 * segment plan from each head's merged links (link `i` joins slots `i` and `i + 1`): runs numbered from 0 in slot
 * order, each run's pivot its highest-scored slot (ties to the lower slot, NaN lowest).
 *
 * Body: the join flags are one ScatterElements, the run ids a CumSum of the run starts; each run's best score
 * is a ScatterElements with `reduction='max'` (NaN mapped to -Infinity first), and its pivot the lowest slot
 * scoring that best, a ScatterElements with `reduction='min'` over the slots (the others offer `L`).
 */
export const LINK_SEGMENTS: FunctionDef = {
  name: 'LinkSegments',
  inputs: ['links', 'scores'],
  outputs: ['segment', 'pivot'],
  body(b) {
    const H = b.shape('scores', 0, 1);
    const L = b.shape('scores', 1, 2);
    const shapeHM = b.concat([H, b.op('Sub', [L, b.shape('links', 1, 2)])], 0);
    const right = b.op('Add', [b.cast('links', 'int64'), b.i64(1, true)]);
    const joined = b.op('ScatterElements', [b.fill(b.concat([H, L], 0), 'int32', 0), right, b.fill(b.shape('links'), 'int32', 1)], { axis: attr.int(1) });
    const starts = b.op('Sub', [b.i32(1, true), joined]);
    const segment = b.op('Sub', [b.op('CumSum', [starts, b.i64(1, true)]), b.i32(1, true)]);
    b.opN('Identity', [segment], {}, { names: ['segment'] });
    const seg = b.cast(segment, 'int64');
    const ranked = b.op('Where', [b.op('IsNaN', ['scores']), b.f32(-Infinity, true), 'scores']);
    const best = b.op('ScatterElements', [b.fill(shapeHM, 'float32', -Infinity), seg, ranked], { axis: attr.int(1), reduction: attr.string('max') });
    const isBest = b.op('Equal', [ranked, b.op('GatherElements', [best, seg], { axis: attr.int(1) })]);
    const end = b.cast(b.squeeze(L, [0]), 'int32');
    const slot = b.op('Range', [b.i32(0, true), end, b.i32(1, true)]);
    const offered = b.op('Where', [isBest, slot, end]);
    b.opN('ScatterElements', [b.op('Expand', [end, shapeHM]), seg, offered], { axis: attr.int(1), reduction: attr.string('min') }, { names: ['pivot'] });
  },
};

/** The linkSegments model: one `ai.kvfold::LinkSegments` node. */
export function linkSegmentsModel(): Uint8Array {
  const g = new GraphBuilder('linkSegments');
  g.input('links', 'int32', ['H', 'C']);
  g.input('scores', 'float32', ['H', 'L']);
  g.custom(LINK_SEGMENTS, ['links', 'scores'], {}, ['segment', 'pivot']);
  g.output('segment', 'int32', ['H', 'L']);
  g.output('pivot', 'int32', ['H', 'M']);
  return g.build();
}

/** KVMerger's segment plan from merged links (KVKernels.linkSegments); core has checked the links. */
export function linkSegments(cache: SessionCache): KernelImplementation<LinkSegmentsCall<OnnxTensor>, Pick<SegmentPlan<OnnxTensor>, 'segment' | 'pivot'>> {
  return {
    run: ({ links, scores, heads: H, length: L, count: C }) => {
      // Nothing to number: empty tensors, without a model run.
      if (H * L === 0) return { segment: new ort.Tensor('int32', new Int32Array(0), [H, L]), pivot: new ort.Tensor('int32', new Int32Array(0), [H, L - C]) };
      const into = [outputTensor(cache.pool, 'int32', [H, L]), outputTensor(cache.pool, 'int32', [H, L - C])];
      const [segment, pivot] = cache.get('linkSegments', 'float32', linkSegmentsModel).run({ links, scores }, ['segment', 'pivot'], into);
      return { segment: segment!, pivot: pivot! };
    },
  };
}
