import type { AdjacentCosineCall, KernelImplementation } from '@kvfold/core';
import type { SessionCache } from '../cache.js';
import { GraphBuilder, type FunctionDef } from '../graph.js';
import { keyScale } from './scale.js';
import type { OnnxTensor } from '../tensor.js';
import { outputTensor } from './gather.js';

/** "To the end" for Slice. */
const END = 2 ** 62;

/**
 * `ai.kvfold::AdjacentCosine(keys f32[H,L,D]) -> cos f32[H,L-1]`: cosine of each key with the next one,
 * 0 where a norm is 0, clipped to [-1, 1].
 *
 * Body: a power-of-two scale per key, one ReduceL2 per slot (each norm serves two pairs), the dot products
 * of the two shifted views, and a Where that keeps the division's NaN (0/0) out of the result.
 */
export const ADJACENT_COSINE: FunctionDef = {
  name: 'AdjacentCosine',
  inputs: ['keys'],
  outputs: ['cos'],
  body(b) {
    // Each key scaled by a power of two first (exact, so the cosine is unchanged; see keyScale).
    const scale = keyScale(b, 'keys');
    const keys = b.op('Mul', ['keys', scale]);
    const a = b.slice(keys, [0], [-1], [1]);
    const c = b.slice(keys, [1], [END], [1]);
    const dot = b.reduce('ReduceSum', b.op('Mul', [a, c]), [2], false);
    const norm = b.reduce('ReduceL2', keys, [2], false);
    const den = b.op('Mul', [b.slice(norm, [0], [-1], [1]), b.slice(norm, [1], [END], [1])]);
    const zero = b.f32(0, true);
    const q = b.op('Div', [dot, den]);
    const safe = b.op('Where', [b.op('Greater', [den, zero]), q, zero]);
    b.opN('Clip', [safe, b.f32(-1, true), b.f32(1, true)], {}, { names: ['cos'] });
  },
};

/** The adjacentCosine model: one `ai.kvfold::AdjacentCosine` node. */
export function adjacentCosineModel(): Uint8Array {
  const g = new GraphBuilder('adjacentCosine');
  g.input('keys', 'float32', ['H', 'L', 'D']);
  g.custom(ADJACENT_COSINE, ['keys'], {}, ['cos']);
  g.output('cos', 'float32', ['H', 'M']);
  return g.build();
}

/** Cosine similarity of each key with the next, float32 `[kvHeads, length - 1]` (`[kvHeads, 0]` when empty). */
export function adjacentCosine(cache: SessionCache): KernelImplementation<AdjacentCosineCall<OnnxTensor>, OnnxTensor> {
  return {
    run: ({ keys, shape }) =>
      cache
        .get('adjacentCosine', 'float32', adjacentCosineModel)
        .run({ keys }, ['cos'], [outputTensor(cache.pool, 'float32', [shape[0]!, Math.max(shape[1]! - 1, 0)])])[0]!,
  };
}
