import { ShapeError } from '../errors.js';
import { badOption, expectInt } from '../kernel-check.js';
import { defineKernel, type HostReader } from '../kernel-definition.js';
import type { LayerCache, SimilarMerge, SimilarMergePlan } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { adjacentCosineKernel } from './adjacentCosine.js';
import { f32, freshAllocator, i32, type HostAllocator, type LayerCall } from './host.js';
import { linkSegmentsKernel } from './linkSegments.js';
import { mergeSegmentsKernel } from './mergeSegments.js';
import { topKKernel } from './topK.js';

/** A validated {@link KVKernels.mergeSimilar} call. */
export interface MergeSimilarCall<T = unknown> extends LayerCall<T> {
  /** The plan. */
  readonly plan: SimilarMergePlan<T>;
  /** Protected slots per head (columns of `plan.protect`). */
  readonly protectedSlots: number;
  /** `valueScale === 'count'`. */
  readonly byCount: boolean;
}

/**
 * KVMerger's exact-budget merge in one call: for each head, the adjacent key cosines ({@link KVKernels.adjacentCosine}),
 * each link `i` (slots `i`, `i + 1`) eligible when neither slot is listed in `plan.protect` and its cosine is
 * finite and `>= plan.minSimilarity`, the `count` best links by cosine with every ineligible link ranked lowest
 * ({@link KVKernels.topK} of the cosines with the ineligible ones NaN), their runs ({@link KVKernels.linkSegments}
 * by the layer's scores) merged with one Gaussian bandwidth (`plan.sigma`) as {@link KVKernels.mergeSegments}
 * merges them. The layer, each head's eligible links and the lowest cosine it merged.
 *
 * The result is exactly that chain of kernels, so a backend may run it head by head: a head's keys are then read
 * by the merge while the cosines left them in cache, and the plan never goes through the host.
 * @throws ShapeError when `protect` is not int32 `[kvHeads, n]` with every entry a slot of the layer, `count` is
 *   not an integer in `[0, max(0, length - 1)]`, or (`count` mode) a count of the layer is below 1.
 * @throws ConfigError when `sigma` is not a finite number above 0, `minSimilarity` is NaN, or `valueScale` is
 *   not `count` or `none`.
 */
export const mergeSimilarKernel = defineKernel({
  name: 'mergeSimilar',
  description: "KVMerger's exact-budget merge in one call: adjacent key cosines, the count most similar unprotected links per head, their runs merged around the highest-scored member.",
  validate(check, layer: LayerCache<unknown>, plan: SimilarMergePlan<unknown>): MergeSimilarCall {
    const dims = check.layer(layer, 'mergeSimilar');
    check.object(plan, 'mergeSimilar: plan', 'SimilarMergePlan');
    const protectedSlots = check.columns(plan.protect, 'mergeSimilar plan.protect', 'int32', dims.heads);
    expectInt(plan.count, 'mergeSimilar plan.count', 0, Math.max(0, dims.length - 1));
    if (typeof plan.sigma !== 'number' || !(plan.sigma > 0) || plan.sigma === Infinity) {
      badOption('mergeSimilar plan', '/sigma', 'exclusiveMinimum', `must be a finite number above 0; got ${String(plan.sigma)}`, '(0, Infinity)');
    }
    if (typeof plan.minSimilarity !== 'number' || Number.isNaN(plan.minSimilarity)) {
      badOption('mergeSimilar plan', '/minSimilarity', 'type', `must be a number; got ${String(plan.minSimilarity)}`, 'number');
    }
    const scale = plan.valueScale;
    if (scale !== 'count' && scale !== 'none') {
      badOption('mergeSimilar plan', '/valueScale', 'enum', `must be one of "count", "none"; got ${JSON.stringify(scale)}`, ['count', 'none']);
    }
    return { layer, plan, dims, protectedSlots, byCount: scale === 'count' };
  },
  contents: checkContents,
  reference: mergeSimilar,
});

/** Every protected slot inside the layer, and (`count` mode) every count at least 1. Throws for the first problem. */
function checkContents({ layer, plan, dims, protectedSlots: P, byCount }: MergeSimilarCall, read: HostReader): void {
  const { heads: H, length: L } = dims;
  const prot = read(plan.protect).data;
  for (let i = 0; i < H * P; i++) {
    const s = prot[i]!;
    if (!(s >= 0 && s < L)) {
      const h = Math.floor(i / P);
      throw new ShapeError(`mergeSimilar plan.protect[${h}, ${i - h * P}] = ${s} is not a slot of a ${L}-slot layer`, { field: 'plan.protect', head: h, index: i - h * P, value: s, allowed: [0, L - 1] });
    }
  }
  if (!byCount) return;
  const counts = read(layer.counts).data;
  for (let i = 0; i < H * L; i++) {
    if (counts[i]! < 1) {
      const h = Math.floor(i / L);
      throw new ShapeError(`mergeSimilar layer.counts[${h}, ${i - h * L}] = ${counts[i]} must be >= 1 with valueScale "count"`, { field: 'layer.counts', head: h, index: i - h * L });
    }
  }
}

/**
 * The definition's chain on host arrays: each step is the reference of the kernel it names, so a backend's
 * fused version is checked against the very kernels it replaces. Only the results come from `alloc`.
 */
function mergeSimilar(call: MergeSimilarCall<HostTensor>, alloc: HostAllocator = freshAllocator): SimilarMerge<HostTensor> {
  const { layer, plan, dims, protectedSlots: P } = call;
  const { heads: H, length: L, headDim: D } = dims;
  const C = plan.count;
  const n1 = Math.max(0, L - 1);
  const cosine = adjacentCosineKernel.reference({ keys: layer.keys, shape: [H, L, D] }).data as Float32Array;
  const prot = plan.protect.data;
  const ranked = new Float32Array(H * n1);
  const eligible = alloc.int32(H);
  const flags = new Uint8Array(L);
  for (let h = 0; h < H; h++) {
    flags.fill(0);
    for (let j = 0; j < P; j++) flags[prot[h * P + j]!] = 1;
    let n = 0;
    for (let i = 0; i < n1; i++) {
      const c = cosine[h * n1 + i]!;
      const ok = flags[i] === 0 && flags[i + 1] === 0 && Number.isFinite(c) && c >= plan.minSimilarity;
      ranked[h * n1 + i] = ok ? c : Number.NaN;
      n += ok ? 1 : 0;
    }
    eligible[h] = n;
  }
  const links = topKKernel.reference({ scores: f32([H, n1], ranked), k: C, from: 0, to: n1, heads: H, length: n1 });
  const chosen = links.data as Int32Array;
  const lowest = alloc.float32(H);
  for (let h = 0; h < H; h++) {
    let low = Infinity;
    for (let j = 0; j < C; j++) low = Math.min(low, cosine[h * n1 + chosen[h * C + j]!]!);
    lowest[h] = low;
  }
  const { segment, pivot } = linkSegmentsKernel.reference({ links, scores: layer.scores, heads: H, length: L, count: C });
  const M = L - C;
  const sigma = f32([H, M], new Float32Array(H * M).fill(plan.sigma));
  const merged = mergeSegmentsKernel.reference({ layer, dims, plan: { segment, pivot, sigma, valueScale: plan.valueScale }, outLength: M, byCount: call.byCount }, alloc);
  return { layer: merged, eligible: i32([H], eligible), lowest: f32([H], lowest) };
}
