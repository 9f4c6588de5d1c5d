import type { AccumulateCall, KernelImplementation } from '@kvfold/core';
import type { SessionCache } from '../cache.js';
import { GraphBuilder } from '../graph.js';
import type { OnnxTensor } from '../tensor.js';
import { outputTensor } from './gather.js';

/** The accumulate model: one Add. */
export function accumulateModel(): Uint8Array {
  const g = new GraphBuilder('accumulate');
  const s = g.input('scores', 'float32', ['H', 'L']);
  const a = g.input('attention', 'float32', ['H', 'L']);
  g.opN('Add', [s, a], {}, { names: ['out'] });
  g.output('out', 'float32', ['H', 'L']);
  return g.build();
}

/** Element-wise `scores + attention` (H2O's score update). */
export function accumulate(cache: SessionCache): KernelImplementation<AccumulateCall<OnnxTensor>, OnnxTensor> {
  return {
    run: ({ scores, attention, shape }) =>
      cache.get('accumulate', 'float32', accumulateModel).run({ scores, attention }, ['out'], [outputTensor(cache.pool, 'float32', shape)])[0]!,
  };
}
