import { describe, expect, it } from 'vitest';
import { ErrorCode, hostLayer, layerFromHost, type HostTensor, type LayerCache } from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { f32, i32 } from './util.js';

const k = createReferenceKernels();
const js = createReferenceKernels({ kernels: 'js' });
const l: LayerCache<HostTensor> = layerFromHost(k, hostLayer({ heads: 2, length: 3, headDim: 2, keys: new Array(12).fill(1), values: new Array(12).fill(1) }));

/** Run `fn`, expect a kvfold error with `code` whose message contains every fragment. */
function expectError(fn: () => unknown, code: string, ...fragments: string[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected an error').toBeInstanceOf(Error);
  expect((caught as { code?: string }).code).toBe(code);
  for (const f of fragments) expect((caught as Error).message).toContain(f);
}

describe('argument validation', () => {
  it('topK rejects k > to - from and bad windows', () => {
    const s = f32([2, 3], [1, 2, 3, 4, 5, 6]);
    expectError(() => k.topK(s, 3, 1, 3), ErrorCode.Shape, 'topK k', '= 3', '[0, 2]');
    expectError(() => k.topK(s, 1, 2, 1), ErrorCode.Shape, 'topK to', '= 1');
    expectError(() => k.topK(s, 1, 0, 4), ErrorCode.Shape, 'topK to', '[0, 3]');
    expectError(() => k.topK(s, 1.5, 0, 3), ErrorCode.Shape, 'topK k');
    expectError(() => k.topK(i32([2, 3], [1, 2, 3, 4, 5, 6]), 1, 0, 3), ErrorCode.DType, 'topK scores', 'int32', '"float32"');
  });

  it('gather rejects an out-of-range index and a wrong head count', () => {
    expectError(() => k.gather(l, i32([2, 1], [0, 3])), ErrorCode.Shape, 'gather index[1, 0] = 3', '[0, 2]');
    expectError(() => k.gather(l, i32([2, 1], [-1, 0])), ErrorCode.Shape, 'gather index[0, 0] = -1');
    expectError(() => k.gather(l, i32([1, 1], [0])), ErrorCode.Shape, 'gather index must be [2, 1]');
    expectError(() => k.gather(l, f32([2, 1], [0, 0])), ErrorCode.DType, 'gather index', 'float32');
  });

  it('checks the layer itself', () => {
    const bad = { ...l, values: f32([2, 2, 2], new Array(8).fill(0)) };
    expectError(() => k.gather(bad, i32([2, 1], [0, 0])), ErrorCode.Shape, 'gather layer.values must be [2, 3, 2]');
    const badCounts = { ...l, counts: f32([2, 3], new Array(6).fill(1)) };
    expectError(() => k.adjacentCosine(badCounts.counts), ErrorCode.Shape, 'adjacentCosine keys must have rank 3');
    expectError(() => k.gather(badCounts, i32([2, 1], [0, 0])), ErrorCode.DType, 'gather layer.counts', 'float32');
    expectError(() => k.gather({ ...l, keys: { dtype: 'float32', shape: [2, 3, 2], data: new Float32Array(5) } }, i32([2, 1], [0, 0])), ErrorCode.Shape, 'holds 5 elements');
  });

  it('accumulate and append reject mismatched shapes', () => {
    expectError(() => k.accumulate(f32([1, 2], [1, 2]), f32([2, 1], [1, 2])), ErrorCode.Shape, 'accumulate attention must be [1, 2]');
    expectError(() => k.append(l, f32([1, 1, 2], [1, 2]), f32([1, 1, 2], [1, 2]), i32([1, 1], [3])), ErrorCode.Shape, 'append keys must be [2, 1, 2]');
    expectError(() => k.append(l, f32([2, 1, 2], [1, 2, 3, 4]), f32([2, 1, 2], [1, 2, 3, 4]), i32([2, 2], [3, 4, 3, 4])), ErrorCode.Shape, 'append positions must be [2, 1]');
  });

  describe('mergeSegments', () => {
    const plan = (segment: number[], pivot: number[], sigma = [1, 1, 1, 1]) => ({
      segment: i32([2, 3], segment),
      pivot: i32([2, pivot.length / 2], pivot),
      sigma: f32([2, pivot.length / 2], sigma.slice(0, pivot.length)),
      valueScale: 'count' as const,
    });
    it('accepts a valid plan', () => {
      expect(k.mergeSegments(l, plan([0, 0, 1, 0, -1, 1], [0, 2, 0, 2])).keys.shape).toEqual([2, 2, 2]);
    });
    it('rejects ids that go down and back up to the last output slot (no gap, the right count at the end), on the wasm screen and the TypeScript check', () => {
      const host = hostLayer({ heads: 1, length: 4, headDim: 2, keys: [1, 0, 0, 1, 1, 1, 2, 0], values: [1, 2, 3, 4, 5, 6, 7, 8] });
      const p = { segment: i32([1, 4], [0, 1, 0, 1]), pivot: i32([1, 2], [0, 1]), sigma: f32([1, 2], [1, 1]), valueScale: 'count' as const };
      for (const kv of [k, js]) expectError(() => kv.mergeSegments(layerFromHost(kv, host), p), ErrorCode.Shape, 'plan.segment[0, 2] = 0', 'non-decreasing');
    });
    it('rejects decreasing ids, gaps and ids beyond the pivots', () => {
      expectError(() => k.mergeSegments(l, plan([0, 1, 0, 0, 0, 1], [0, 1, 0, 2])), ErrorCode.Shape, 'plan.segment[0, 2] = 0', 'non-decreasing');
      expectError(() => k.mergeSegments(l, plan([0, 0, 2, 0, 0, 1], [0, 2, 0, 2])), ErrorCode.Shape, 'plan.segment[0, 2] = 2', 'without gaps');
      expectError(() => k.mergeSegments(l, plan([1, 1, 1, 0, 0, 1], [0, 2, 0, 2])), ErrorCode.Shape, 'plan.segment[0, 0] = 1', 'without gaps');
      expectError(() => k.mergeSegments(l, plan([0, 0, 0, 0, 0, 1], [0, 2, 0, 2])), ErrorCode.Shape, 'head 0 uses output slots 0..0 but plan.pivot has 2');
      expectError(() => k.mergeSegments(l, plan([0, 1, 2, 0, 1, 2], [0, 1, 0, 1])), ErrorCode.Shape, 'plan.segment[0, 2] = 2', 'pivot has 2 output slots');
      expectError(() => k.mergeSegments(l, plan([0, -2, 1, 0, 0, 1], [0, 2, 0, 2])), ErrorCode.Shape, 'plan.segment[0, 1] = -2', '>= -1');
    });
    it('rejects a pivot outside its run and sigma <= 0', () => {
      expectError(() => k.mergeSegments(l, plan([0, 0, 1, 0, 0, 1], [0, 1, 0, 2])), ErrorCode.Shape, 'plan.pivot[0, 1] = 1 is not a member of run 1', 'slots are 2..2');
      expectError(() => k.mergeSegments(l, plan([0, 0, 1, 0, 0, 1], [0, 2, 0, 7])), ErrorCode.Shape, 'plan.pivot[1, 1] = 7');
      expectError(() => k.mergeSegments(l, plan([0, 0, 1, 0, 0, 1], [0, 2, 0, 2], [1, 0, 1, 1])), ErrorCode.Shape, 'plan.sigma[0, 1] = 0 must be > 0');
      expectError(() => k.mergeSegments(l, plan([0, 0, 1, 0, 0, 1], [0, 2, 0, 2], [1, 1, Number.NaN, 1])), ErrorCode.Shape, 'plan.sigma[1, 0] = NaN');
    });
    it('rejects an unknown valueScale and zero counts in count mode', () => {
      const p = plan([0, 0, 1, 0, 0, 1], [0, 2, 0, 2]);
      expectError(() => k.mergeSegments(l, { ...p, valueScale: 'size' as 'count' }), ErrorCode.Config, '/valueScale', '"count", "none"');
      const zero = { ...l, counts: i32([2, 3], [1, 0, 1, 1, 1, 1]) };
      expectError(() => k.mergeSegments(zero, p), ErrorCode.Shape, 'layer.counts[0, 1] = 0 must be >= 1');
      expect(k.mergeSegments(zero, { ...p, valueScale: 'none' }).counts.data[0]).toBe(1);
    });
  });

  describe('mergeIntoNeighbours', () => {
    const plan = (keep: number[], over: Partial<Record<'source' | 'targetStart' | 'targetCount', number[]>> & { gate?: number[] } = {}) => ({
      keep: i32([2, keep.length / 2], keep),
      source: i32([2, 1], over.source ?? [1, 1]),
      targetStart: i32([2, 1], over.targetStart ?? [0, 0]),
      targetCount: i32([2, 1], over.targetCount ?? [1, 1]),
      gate: f32([2, 1], over.gate ?? [1, 1]),
    });
    it('rejects unsorted keep, bad sources, windows and gates', () => {
      expectError(() => k.mergeIntoNeighbours(l, plan([2, 0, 0, 2])), ErrorCode.Shape, 'plan.keep[0, 1] = 0', 'strictly ascending');
      expectError(() => k.mergeIntoNeighbours(l, plan([0, 3, 0, 2])), ErrorCode.Shape, 'plan.keep[0, 1] = 3 is out of range');
      expectError(() => k.mergeIntoNeighbours(l, plan([0, 2, 0, 2], { source: [1, 5] })), ErrorCode.Shape, 'plan.source[1, 0] = 5');
      expectError(() => k.mergeIntoNeighbours(l, plan([0, 2, 0, 2], { targetStart: [1, 0], targetCount: [2, 1] })), ErrorCode.Shape, 'plan.targetStart[0, 0] = 1 with targetCount 2 leaves plan.keep');
      expectError(() => k.mergeIntoNeighbours(l, plan([0, 2, 0, 2], { targetCount: [1, -1] })), ErrorCode.Shape, 'plan.targetCount[1, 0] = -1');
      expectError(() => k.mergeIntoNeighbours(l, plan([0, 2, 0, 2], { gate: [Number.POSITIVE_INFINITY, 1] })), ErrorCode.Shape, 'plan.gate[0, 0] = Infinity must be finite');
    });
  });

  describe('observe', () => {
    const q = (heads: number) => f32([heads, 1, 2], new Array(heads * 2).fill(1));
    it('rejects query heads that are not a multiple of kv heads', () => {
      expectError(() => k.observe(l, q(3), i32([1], [5])), ErrorCode.Shape, '3 query heads', '2 kv heads');
      expectError(() => k.observe(l, q(0), i32([1], [5])), ErrorCode.Shape, '0 query heads');
    });
    it('rejects mismatched headDim and positions', () => {
      expectError(() => k.observe(l, f32([2, 1, 3], new Array(6).fill(1)), i32([1], [5])), ErrorCode.Shape, 'observe queries must be [2, 1, 2]');
      expectError(() => k.observe(l, q(2), i32([2], [5, 6])), ErrorCode.Shape, 'observe queryPositions must be [1]');
    });
    it('rejects bad options with the allowed values', () => {
      expectError(() => k.observe(l, q(2), i32([1], [5]), { groupReduction: 'median' as 'mean' }), ErrorCode.Config, '/groupReduction', '"mean", "max", "sum"');
      expectError(() => k.observe(l, q(2), i32([1], [5]), { scale: Number.NaN }), ErrorCode.Config, '/scale', 'finite');
      const zero = { ...l, counts: i32([2, 3], [1, 1, 1, 1, 0, 1]) };
      expectError(() => k.observe(zero, q(2), i32([1], [5]), { proportional: true }), ErrorCode.Shape, 'counts', '[1, 1] = 0');
    });
  });

  it('fromHost rejects a non-tensor and an unknown dtype', () => {
    expectError(() => k.fromHost({ dtype: 'float64', shape: [1], data: new Float32Array(1) } as unknown as HostTensor), ErrorCode.DType, 'float64');
    expectError(() => k.fromHost({ dtype: 'float32', shape: [2], data: new Float32Array(1) }), ErrorCode.Shape, 'holds 1 elements');
    expectError(() => k.fromHost({ dtype: 'int32', shape: [1], data: new Float32Array(1) } as unknown as HostTensor), ErrorCode.DType, 'Float32Array');
  });
});
