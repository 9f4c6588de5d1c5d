import { accumulateKernel, checkWindow, type ArgCheck } from '@kvfold/core';
import type { SessionCache } from '../cache.js';
import { GraphBuilder, type FunctionDef } from '../graph.js';
import { int64Scalar, type OnnxTensor } from '../tensor.js';
import { outputTensor } from './gather.js';
import { SELECT_TOP_K } from './topK.js';

/**
 * `ai.kvfold::AccumulateSelect(scores, attention, k, from, to) -> (accumulated, index)`: H2O's step in one
 * op — add the new attention to the scores and pick the heavy hitters of the window. The body is an Add
 * followed by a nested call of {@link SELECT_TOP_K}; the native kernels do both in one pass.
 */
export const ACCUMULATE_SELECT: FunctionDef = {
  name: 'AccumulateSelect',
  inputs: ['scores', 'attention', 'k', 'from', 'to'],
  outputs: ['accumulated', 'index'],
  uses: [SELECT_TOP_K],
  body(b) {
    b.opN('Add', ['scores', 'attention'], {}, { names: ['accumulated'] });
    b.opN(SELECT_TOP_K.name, ['accumulated', 'k', 'from', 'to'], {}, { domain: 'ai.kvfold', names: ['index'] });
  },
};

/** The accumulateTopK model: one `ai.kvfold::AccumulateSelect` node. */
export function accumulateTopKModel(): Uint8Array {
  const g = new GraphBuilder('accumulateTopK');
  g.input('scores', 'float32', ['H', 'L']);
  g.input('attention', 'float32', ['H', 'L']);
  g.input('k', 'int64', [1]);
  g.input('from', 'int64', [1]);
  g.input('to', 'int64', [1]);
  g.custom(ACCUMULATE_SELECT, ['scores', 'attention', 'k', 'from', 'to'], {}, ['accumulated', 'index']);
  g.output('accumulated', 'float32', ['H', 'L']);
  g.output('index', 'int32', ['H', 'K']);
  return g.build();
}

/** Result of `OnnxKernels.accumulateTopK` (the fused H2O step). */
export interface AccumulatedSelection {
  /** `scores + attention`, float32 `[kvHeads, length]`. */
  readonly scores: OnnxTensor;
  /** topK of the accumulated scores over `[from, to)`, ascending, int32 `[kvHeads, k]`. */
  readonly index: OnnxTensor;
}

/**
 * Fused `accumulate` + `topK` (one kernel call instead of two; same results as calling both), validated
 * by the two kernels' definitions in core.
 * @throws ShapeError / DTypeError as accumulate and topK do.
 */
export function accumulateTopK(cache: SessionCache, check: ArgCheck, scores: OnnxTensor, attention: OnnxTensor, k: number, from: number, to: number): AccumulatedSelection {
  const { shape } = accumulateKernel.validate(check, scores, attention);
  checkWindow('accumulateTopK', shape[1]!, k, from, to);
  const [acc, index] = cache
    .get('accumulateTopK', 'float32', accumulateTopKModel)
    .run({ scores, attention, k: int64Scalar(k), from: int64Scalar(from), to: int64Scalar(to) }, ['accumulated', 'index'], [
      outputTensor(cache.pool, 'float32', shape),
      outputTensor(cache.pool, 'int32', [shape[0]!, k]),
    ]);
  return { scores: acc!, index: index! };
}
