import type { SessionCache } from '../cache.js';
import { GraphBuilder } from '../graph.js';
import { dimsOf, expectShape, type OnnxTensor } from '../validate.js';

/** The accumulate model: one Add. */
export function accumulateModel(): Uint8Array {
  const g = new GraphBuilder('accumulate');
  const s = g.input('scores', 'float32', ['H', 'L']);
  const a = g.input('attention', 'float32', ['H', 'L']);
  g.opN('Add', [s, a], {}, { names: ['out'] });
  g.output('out', 'float32', ['H', 'L']);
  return g.build();
}

/**
 * Element-wise `scores + attention` (H2O's score update).
 * @throws ShapeError when the shapes differ; DTypeError when either is not float32.
 */
export function accumulate(cache: SessionCache, scores: OnnxTensor, attention: OnnxTensor): OnnxTensor {
  const s = dimsOf(scores, 'accumulate scores', 'float32', 2);
  expectShape(dimsOf(attention, 'accumulate attention', 'float32', 2), s, 'accumulate attention');
  return cache.get('accumulate', 'float32', accumulateModel).run({ scores, attention }, ['out'])[0]!;
}
