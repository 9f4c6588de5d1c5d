import type { KernelImplementation, KeyNormsCall } from '@kvfold/core';
import type { SessionCache } from '../cache.js';
import { GraphBuilder } from '../graph.js';
import { keyScale } from './scale.js';
import type { OnnxTensor } from '../tensor.js';

/**
 * The keyNorms model, stock ops only (no custom kernel needed): each key scaled by a power of two
 * ({@link keyScale}), one ReduceL2 over the head dimension, and the scale divided out again (exact), so
 * keys whose squares would overflow or underflow float32 get the reference's float64 norm.
 */
export function keyNormsModel(): Uint8Array {
  const g = new GraphBuilder('keyNorms');
  g.input('keys', 'float32', ['H', 'L', 'D']);
  const scale = keyScale(g, 'keys');
  const norms = g.reduce('ReduceL2', g.op('Mul', ['keys', scale]), [2], true);
  g.opN('Squeeze', [g.op('Div', [norms, scale]), g.i64([2])], {}, { names: ['norms'] });
  g.output('norms', 'float32', ['H', 'L']);
  return g.build();
}

/** L2 norm of each key, float32 `[kvHeads, length]`. */
export function keyNorms(cache: SessionCache): KernelImplementation<KeyNormsCall<OnnxTensor>, OnnxTensor> {
  return { run: ({ keys }) => cache.get('keyNorms', 'float32', keyNormsModel).run({ keys }, ['norms'])[0]! };
}
