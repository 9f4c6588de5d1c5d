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

/** "To the end" for Slice. */
const END = 2 ** 62;

/**
 * The allFinite model for the newest slots of each head: `x` is the tensor viewed as `[heads, rest]`, and
 * only its columns from `start` on (slots `from..` of each head, `start = from * elements per slot`) are
 * scaled by `scale` (1 without a bound) and summed as in {@link allFiniteModel}.
 */
export function allFiniteTailModel(): Uint8Array {
  const g = new GraphBuilder('allFiniteTail');
  g.input('x', 'float32', ['H', 'M']);
  const tail = g.op('Slice', ['x', g.input('start', 'int64', [1]), g.i64([END]), g.i64([1])]);
  const z = g.op('Mul', [g.op('Mul', [tail, g.input('scale', 'float32', [])]), g.f32(0, true)]);
  const s = g.op('ReduceSum', [z], { keepdims: attr.int(0) });
  g.opN('Equal', [s, g.f32(0, true)], {}, { names: ['ok'] });
  g.output('ok', 'bool', []);
  return g.build();
}

/**
 * True when every element (of slots `from..` along axis 1, when the call has one) is finite and, with a
 * bound, smaller than it in magnitude (the call's `scale` is `2^(128 - log2 bound)`); int32 tensors always are.
 */
export function allFinite(cache: SessionCache): KernelImplementation<AllFiniteCall<OnnxTensor>, boolean> {
  return { run: ({ tensor, dtype, shape, scale, from }) => dtype === 'int32' || (from === 0 ? finite(cache, tensor, scale) : finiteTail(cache, tensor, shape, from, scale)) };
}

function finiteTail(cache: SessionCache, tensor: OnnxTensor, shape: readonly number[], from: number, scale: number | undefined): boolean {
  const H = shape[0]!;
  const M = tensor.size / Math.max(H, 1);
  if (tensor.size === 0 || from === shape[1]) return true;
  // A [heads, rest] view of the same buffer (no copy); the slots of a head are contiguous within its row.
  const rows = new ort.Tensor('float32', tensor.data as Float32Array, [H, M]);
  const start = new ort.Tensor('int64', BigInt64Array.of(BigInt(from * (M / shape[1]!))), [1]);
  const r = cache.get('allFiniteTail', 'float32', allFiniteTailModel).run({ x: rows, start, scale: new ort.Tensor('float32', new Float32Array([scale ?? 1]), []) }, ['ok'])[0]!;
  return (r.data as Uint8Array | boolean[])[0] ? true : false;
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
