// Bad input fails with the same typed error as on the reference backend: same class, code and message
// (the field, the offending element and the allowed values), never a tfjs-internal error or garbage.
import { describe, expect, it } from 'vitest';
import { ErrorCode, KVFoldError, hostLayer, hostTensor, layerFromHost, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';
import type * as tf from '@tensorflow/tfjs-core';
import { ENGINES, kernelsFor, ref } from './helpers.js';

const f32 = (shape: number[], data: number[]): HostTensor => hostTensor('float32', shape, data);
const i32 = (shape: number[], data: number[]): HostTensor => hostTensor('int32', shape, data);
const base = hostLayer({ heads: 2, length: 3, headDim: 2, keys: [1, 0, 0, 1, 1, 1, 2, 0, 0, 2, 1, 2], values: new Array(12).fill(1) });

/** A bad call, written once for any backend: `u` uploads host tensors, `l` is the 2 x 3 x 2 layer. */
type BadCall = <T>(k: KVKernels<T>, u: (t: HostTensor) => T, l: LayerCache<T>) => unknown;

const segPlan = <T>(u: (t: HostTensor) => T, segment: number[], pivot: number[], sigma = [1, 1, 1, 1]) => ({
  segment: u(i32([2, 3], segment)),
  pivot: u(i32([2, pivot.length / 2], pivot)),
  sigma: u(f32([2, pivot.length / 2], sigma.slice(0, pivot.length))),
  valueScale: 'count' as const,
});
const camPlan = <T>(u: (t: HostTensor) => T, keep: number[], o: { source?: number[]; targetStart?: number[]; targetCount?: number[]; gate?: number[] } = {}) => ({
  keep: u(i32([2, keep.length / 2], keep)),
  source: u(i32([2, 1], o.source ?? [1, 1])),
  targetStart: u(i32([2, 1], o.targetStart ?? [0, 0])),
  targetCount: u(i32([2, 1], o.targetCount ?? [1, 1])),
  gate: u(f32([2, 1], o.gate ?? [1, 1])),
});
const q = <T>(u: (t: HostTensor) => T, heads: number) => u(f32([heads, 1, 2], new Array(heads * 2).fill(1)));

const CASES: Record<string, BadCall> = {
  'topK k > to - from': (k, u) => k.topK(u(f32([2, 3], [1, 2, 3, 4, 5, 6])), 3, 1, 3),
  'topK to < from': (k, u) => k.topK(u(f32([2, 3], [1, 2, 3, 4, 5, 6])), 1, 2, 1),
  'topK to > length': (k, u) => k.topK(u(f32([2, 3], [1, 2, 3, 4, 5, 6])), 1, 0, 4),
  'topK fractional k': (k, u) => k.topK(u(f32([2, 3], [1, 2, 3, 4, 5, 6])), 1.5, 0, 3),
  'topK int32 scores': (k, u) => k.topK(u(i32([2, 3], [1, 2, 3, 4, 5, 6])), 1, 0, 3),
  'gather index too large': (k, u, l) => k.gather(l, u(i32([2, 1], [0, 3]))),
  'gather negative index': (k, u, l) => k.gather(l, u(i32([2, 1], [-1, 0]))),
  'gather wrong head count': (k, u, l) => k.gather(l, u(i32([1, 1], [0]))),
  'gather float index': (k, u, l) => k.gather(l, u(f32([2, 1], [0, 0]))),
  'layer values of another shape': (k, u, l) => k.gather({ ...l, values: u(f32([2, 2, 2], new Array(8).fill(0))) }, u(i32([2, 1], [0, 0]))),
  'adjacentCosine of rank 2': (k, u) => k.adjacentCosine(u(f32([2, 3], new Array(6).fill(1)))),
  'layer counts as float32': (k, u, l) => k.gather({ ...l, counts: u(f32([2, 3], new Array(6).fill(1))) }, u(i32([2, 1], [0, 0]))),
  'accumulate mismatched shapes': (k, u) => k.accumulate(u(f32([1, 2], [1, 2])), u(f32([2, 1], [1, 2]))),
  'append keys of another head count': (k, u, l) => k.append(l, u(f32([1, 1, 2], [1, 2])), u(f32([1, 1, 2], [1, 2])), u(i32([1, 1], [3]))),
  'append positions of another length': (k, u, l) => k.append(l, u(f32([2, 1, 2], [1, 2, 3, 4])), u(f32([2, 1, 2], [1, 2, 3, 4])), u(i32([2, 2], [3, 4, 3, 4]))),
  'mergeSegments decreasing ids': (k, u, l) => k.mergeSegments(l, segPlan(u, [0, 1, 0, 0, 0, 1], [0, 1, 0, 2])),
  'mergeSegments gap': (k, u, l) => k.mergeSegments(l, segPlan(u, [0, 0, 2, 0, 0, 1], [0, 2, 0, 2])),
  'mergeSegments first id not 0': (k, u, l) => k.mergeSegments(l, segPlan(u, [1, 1, 1, 0, 0, 1], [0, 2, 0, 2])),
  'mergeSegments head with fewer runs': (k, u, l) => k.mergeSegments(l, segPlan(u, [0, 0, 0, 0, 0, 1], [0, 2, 0, 2])),
  'mergeSegments id beyond the pivots': (k, u, l) => k.mergeSegments(l, segPlan(u, [0, 1, 2, 0, 1, 2], [0, 1, 0, 1])),
  'mergeSegments id below -1': (k, u, l) => k.mergeSegments(l, segPlan(u, [0, -2, 1, 0, 0, 1], [0, 2, 0, 2])),
  'mergeSegments pivot outside its run': (k, u, l) => k.mergeSegments(l, segPlan(u, [0, 0, 1, 0, 0, 1], [0, 1, 0, 2])),
  'mergeSegments pivot out of range': (k, u, l) => k.mergeSegments(l, segPlan(u, [0, 0, 1, 0, 0, 1], [0, 2, 0, 7])),
  'mergeSegments sigma 0': (k, u, l) => k.mergeSegments(l, segPlan(u, [0, 0, 1, 0, 0, 1], [0, 2, 0, 2], [1, 0, 1, 1])),
  'mergeSegments sigma NaN': (k, u, l) => k.mergeSegments(l, segPlan(u, [0, 0, 1, 0, 0, 1], [0, 2, 0, 2], [1, 1, Number.NaN, 1])),
  'mergeSegments unknown valueScale': (k, u, l) => k.mergeSegments(l, { ...segPlan(u, [0, 0, 1, 0, 0, 1], [0, 2, 0, 2]), valueScale: 'size' as 'count' }),
  'mergeSegments zero count': (k, u, l) => k.mergeSegments({ ...l, counts: u(i32([2, 3], [1, 0, 1, 1, 1, 1])) }, segPlan(u, [0, 0, 1, 0, 0, 1], [0, 2, 0, 2])),
  'mergeIntoNeighbours unsorted keep': (k, u, l) => k.mergeIntoNeighbours(l, camPlan(u, [2, 0, 0, 2])),
  'mergeIntoNeighbours keep out of range': (k, u, l) => k.mergeIntoNeighbours(l, camPlan(u, [0, 3, 0, 2])),
  'mergeIntoNeighbours source out of range': (k, u, l) => k.mergeIntoNeighbours(l, camPlan(u, [0, 2, 0, 2], { source: [1, 5] })),
  'mergeIntoNeighbours window past keep': (k, u, l) => k.mergeIntoNeighbours(l, camPlan(u, [0, 2, 0, 2], { targetStart: [1, 0], targetCount: [2, 1] })),
  'mergeIntoNeighbours negative count': (k, u, l) => k.mergeIntoNeighbours(l, camPlan(u, [0, 2, 0, 2], { targetCount: [1, -1] })),
  'mergeIntoNeighbours infinite gate': (k, u, l) => k.mergeIntoNeighbours(l, camPlan(u, [0, 2, 0, 2], { gate: [Number.POSITIVE_INFINITY, 1] })),
  'observe 3 query heads for 2 kv heads': (k, u, l) => k.observe(l, q(u, 3), u(i32([1], [5]))),
  'observe no query heads': (k, u, l) => k.observe(l, q(u, 0), u(i32([1], [5]))),
  'observe queries of another head dim': (k, u, l) => k.observe(l, u(f32([2, 1, 3], new Array(6).fill(1))), u(i32([1], [5]))),
  'observe positions of another length': (k, u, l) => k.observe(l, q(u, 2), u(i32([2], [5, 6]))),
  'observe unknown reduction': (k, u, l) => k.observe(l, q(u, 2), u(i32([1], [5])), { groupReduction: 'median' as 'mean' }),
  'observe NaN scale': (k, u, l) => k.observe(l, q(u, 2), u(i32([1], [5])), { scale: Number.NaN }),
  'observe proportional with a zero count': (k, u, l) => k.observe({ ...l, counts: u(i32([2, 3], [1, 1, 1, 1, 0, 1])) }, q(u, 2), u(i32([1], [5])), { proportional: true }),
  'fromHost unknown dtype': (k) => k.fromHost({ dtype: 'float64', shape: [1], data: new Float32Array(1) } as unknown as HostTensor),
  'fromHost too few elements': (k) => k.fromHost({ dtype: 'float32', shape: [2], data: new Float32Array(1) }),
  'fromHost int32 backed by Float32Array': (k) => k.fromHost({ dtype: 'int32', shape: [1], data: new Float32Array(1) } as unknown as HostTensor),
};

/** The error `fn` throws (synchronously). */
function errorOf(fn: () => unknown): KVFoldError {
  try {
    fn();
  } catch (e) {
    return e as KVFoldError;
  }
  throw new Error('expected an error, none was thrown');
}

for (const engine of ENGINES) {
  describe(`tfjs ${engine}: bad input gives the reference backend's typed error`, () => {
    for (const [name, call] of Object.entries(CASES)) {
      it(name, async () => {
        const k = await kernelsFor(engine);
        const want = errorOf(() => call(ref, (t) => ref.fromHost(t), layerFromHost(ref, base)));
        const got = errorOf(() => call(k, (t) => k.fromHost(t), layerFromHost(k, base)));
        expect(got).toBeInstanceOf(KVFoldError);
        expect(got.constructor).toBe(want.constructor);
        expect(got.code).toBe(want.code);
        expect(got.message).toBe(want.message);
      });
    }

    it('rejects handles that are not live tfjs tensors, naming the argument', async () => {
      const k = await kernelsFor(engine);
      const l = layerFromHost(k, base);
      const dead = k.fromHost(f32([2, 3], [1, 2, 3, 4, 5, 6]));
      k.dispose(dead);
      const gone = errorOf(() => k.topK(dead, 1, 0, 3));
      expect(gone.code).toBe(ErrorCode.Shape);
      expect(gone.message).toContain('topK scores was disposed');
      const host = errorOf(() => k.accumulate(ref.fromHost(f32([1, 1], [1])) as unknown as tf.Tensor, l.scores));
      expect(host.code).toBe(ErrorCode.Shape);
      expect(host.message).toContain('accumulate scores is not a tfjs-backend tensor');
      await expect(k.toHost(dead)).rejects.toMatchObject({ code: ErrorCode.Shape });
      k.dispose(l.keys, l.values, l.positions, l.counts, l.scores);
    });
  });
}
