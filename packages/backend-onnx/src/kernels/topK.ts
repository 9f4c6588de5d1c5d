import type { KernelImplementation, TopKCall } from '@kvfold/core';
import type { SessionCache } from '../cache.js';
import { attr, GraphBuilder, type FunctionDef } from '../graph.js';
import { int64Scalar, type OnnxTensor } from '../tensor.js';
import { outputTensor } from './gather.js';

/**
 * `ai.kvfold::SelectTopK(scores f32[H,L], k i64[1], from i64[1], to i64[1]) -> index i32[H,k]`: the `k`
 * highest scores of each head among slots `[from, to)`, returned sorted by slot index.
 *
 * Body: Slice the window, NaN to -Infinity, TopK (ORT's TopK is stable, so ties keep the lower index), shift by `from`,
 * then a second TopK with `largest=0` on the indices themselves sorts them ascending.
 */
export const SELECT_TOP_K: FunctionDef = {
  name: 'SelectTopK',
  inputs: ['scores', 'k', 'from', 'to'],
  outputs: ['index'],
  body(b) {
    const raw = b.op('Slice', ['scores', 'from', 'to', b.i64([1])]);
    // NaN ranks as -Infinity (the reference's rule), so a non-finite score never decides the result.
    const win = b.op('Where', [b.op('IsNaN', [raw]), b.f32(-Infinity, true), raw]);
    const [, idx] = b.opN('TopK', [win, 'k'], { axis: attr.int(1), largest: attr.int(1), sorted: attr.int(1) }, { outputs: 2 });
    const abs = b.op('Add', [idx!, 'from']);
    const [asc] = b.opN('TopK', [abs, 'k'], { axis: attr.int(1), largest: attr.int(0), sorted: attr.int(1) }, { outputs: 2 });
    b.opN('Cast', [asc!], { to: attr.int(6) }, { names: ['index'] });
  },
};

/** The topK model: one `ai.kvfold::SelectTopK` node. */
export function topKModel(): Uint8Array {
  const g = new GraphBuilder('topK');
  g.input('scores', 'float32', ['H', 'L']);
  g.input('k', 'int64', [1]);
  g.input('from', 'int64', [1]);
  g.input('to', 'int64', [1]);
  g.custom(SELECT_TOP_K, ['scores', 'k', 'from', 'to'], {}, ['index']);
  g.output('index', 'int32', ['H', 'K']);
  return g.build();
}

/** Indices of the `k` highest scores of each head among slots `[from, to)`, ascending by slot (KVKernels.topK). */
export function topK(cache: SessionCache): KernelImplementation<TopKCall<OnnxTensor>, OnnxTensor> {
  return {
    run: ({ scores, k, from, to, heads }) =>
      cache
        .get('topK', 'float32', topKModel)
        .run({ scores, k: int64Scalar(k), from: int64Scalar(from), to: int64Scalar(to) }, ['index'], [outputTensor(cache.pool, 'int32', [heads, k])])[0]!,
  };
}
