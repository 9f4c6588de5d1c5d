import type { AllFiniteCall, KernelImplementation } from '@kvfold/core';
import { ort } from '../ort.js';
import type { SessionCache } from '../cache.js';
import { attr, GraphBuilder } from '../graph.js';
import type { OnnxTensor } from '../tensor.js';

/**
 * The allFinite model: `ReduceSum(x * 0)` over every axis is 0 for finite data and NaN as soon as one
 * element is NaN or infinite, so one scalar answers for the whole tensor without a host-side scan. The
 * bounded model multiplies by its `scale` input first (`2^(128 - log2 bound)`), which overflows to
 * infinity exactly where `|x| >= bound`.
 */
export function allFiniteModel(bounded = false): Uint8Array {
  const g = new GraphBuilder(bounded ? 'allFiniteBounded' : 'allFinite');
  let x = g.input('x', 'float32', ['N']);
  if (bounded) x = g.op('Mul', [x, g.input('scale', 'float32', [])]);
  const z = g.op('Mul', [x, g.f32(0, true)]);
  const s = g.op('ReduceSum', [z], { keepdims: attr.int(0) });
  g.opN('Equal', [s, g.f32(0, true)], {}, { names: ['ok'] });
  g.output('ok', 'bool', []);
  return g.build();
}

/**
 * True when every element is finite (and, with a bound, smaller than it in magnitude: the call's `scale`
 * is `2^(128 - log2 bound)`); int32 tensors always are.
 */
export function allFinite(cache: SessionCache): KernelImplementation<AllFiniteCall<OnnxTensor>, boolean> {
  return { run: ({ tensor, dtype, scale }) => dtype === 'int32' || finite(cache, tensor, scale) };
}

function finite(cache: SessionCache, tensor: OnnxTensor, scale: number | undefined): boolean {
  // The model is rank-free: a flat view of the same buffer (no copy) feeds its 1-D input.
  const flat = new ort.Tensor('float32', tensor.data as Float32Array, [tensor.size]);
  const r =
    scale === undefined
      ? cache.get('allFinite', 'float32', () => allFiniteModel()).run({ x: flat }, ['ok'])[0]!
      : cache.get('allFiniteBounded', 'float32', () => allFiniteModel(true)).run({ x: flat, scale: new ort.Tensor('float32', new Float32Array([scale]), []) }, ['ok'])[0]!;
  return (r.data as Uint8Array | boolean[])[0] ? true : false;
}
