import type { KernelImplementation, KeyNormsCall } from '@kvfold/core';
import type { SessionCache } from '../cache.js';
import { GraphBuilder } from '../graph.js';
import type { OnnxTensor } from '../tensor.js';

/** The keyNorms model: one ReduceL2 over the head dimension (a stock op: no custom kernel needed). */
export function keyNormsModel(): Uint8Array {
  const g = new GraphBuilder('keyNorms');
  g.input('keys', 'float32', ['H', 'L', 'D']);
  g.opN('Identity', [g.reduce('ReduceL2', 'keys', [2], false)], {}, { names: ['norms'] });
  g.output('norms', 'float32', ['H', 'L']);
  return g.build();
}

/** L2 norm of each key, float32 `[kvHeads, length]`. */
export function keyNorms(cache: SessionCache): KernelImplementation<KeyNormsCall<OnnxTensor>, OnnxTensor> {
  return { run: ({ keys }) => cache.get('keyNorms', 'float32', keyNormsModel).run({ keys }, ['norms'])[0]! };
}
