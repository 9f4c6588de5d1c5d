import { ShapeError } from '../errors.js';
import { defineKernel } from '../kernel-definition.js';
import type { SegmentPlan } from '../kernels.js';
import type { HostTensor } from '../tensor.js';
import { freshAllocator, i32 } from './host.js';

/** A validated {@link KVKernels.linkSegments} call. */
export interface LinkSegmentsCall<T = unknown> {
  /** int32 `[kvHeads, count]`: each head's merged links, strictly ascending (link `i` joins slots `i` and `i + 1`). */
  readonly links: T;
  /** float32 `[kvHeads, length]`: what picks each run's pivot. */
  readonly scores: T;
  /** kv heads. */
  readonly heads: number;
  /** Slots per head. */
  readonly length: number;
  /** Links per head. */
  readonly count: number;
}

/**
 * The `segment` and `pivot` of a {@link SegmentPlan} in which the merged `links` join runs of consecutive
 * slots and nothing is evicted: each head's slots in order get output slot ids from 0 (a slot continues its
 * predecessor's id when the link between them is listed), and each run's pivot is its highest-scored member
 * (ties to the lower slot, NaN ranks lowest). Every head keeps `length - count` slots. KVMerger's plan after
 * its link selection; the kernel exists so that backends run this walk over every slot next to their data
 * (in wasm, split by heads on the reference backend) instead of in JavaScript on the calling thread.
 * @throws ShapeError when `links` is not int32 `[kvHeads, count]` with `count <= max(0, length - 1)`, or a
 *   head's links are not strictly ascending within `[0, length - 2]`.
 */
export const linkSegmentsKernel = defineKernel({
  name: 'linkSegments',
  description: 'Segment ids and pivots (highest score, ties to the lower slot) of the runs that each head\'s merged links [kvHeads, count] join; nothing evicted.',
  validate(check, links: unknown, scores: unknown): LinkSegmentsCall {
    const [heads, length] = check.tensor(scores, 'linkSegments scores', 'float32', 2) as [number, number];
    const count = check.columns(links, 'linkSegments links', 'int32', heads);
    const most = Math.max(0, length - 1);
    if (count > most) {
      throw new ShapeError(`linkSegments links: ${count} links per head, but ${length} slots have only ${most}`, { field: 'links', count, allowed: [0, most] });
    }
    return { links, scores, heads, length, count };
  },
  contents({ links, length, count }, read) {
    expectLinks(read(links).data, count, length);
  },
  reference({ links, scores, heads: H, length: L, count: C }: LinkSegmentsCall<HostTensor>, alloc = freshAllocator): Pick<SegmentPlan<HostTensor>, 'segment' | 'pivot'> {
    const M = L - C;
    const segment = alloc.int32(H * L);
    const pivot = alloc.int32(H * M);
    const flags = new Uint8Array(L);
    const lk = links.data as Int32Array;
    for (let h = 0; h < H; h++) segmentHead(lk.subarray(h * C, (h + 1) * C), flags, scores.data, h * L, L, segment, pivot, h * M);
    return { segment: i32([H, L], segment), pivot: i32([H, M], pivot) };
  },
});

/**
 * Check that each head's row of `links` (`[heads, count]`) is strictly ascending within `[0, length - 2]`.
 * @throws ShapeError naming the first offender.
 */
function expectLinks(data: ArrayLike<number>, count: number, length: number): void {
  // Head by head, so that no entry pays a division to find its head (onnx runs this check on every call).
  for (let h = 0, row = 0; row < data.length; h++, row += count) {
    let low = 0;
    for (let j = 0; j < count; j++) {
      const v = data[row + j]!;
      if (v < low || v > length - 2) {
        throw new ShapeError(`linkSegments links[${h}, ${j}] = ${v}: each head's links must be strictly ascending within [0, ${length - 2}]`, { field: 'links', head: h, index: j, value: v, allowed: [low, length - 2] });
      }
      low = v + 1;
    }
  }
}

/** Attention scores as comparable numbers (NaN ranks lowest). */
function val(x: number): number {
  return Number.isNaN(x) ? -Infinity : x;
}

/**
 * One head of {@link linkSegmentsKernel} on host arrays: the segment ids of slots `base .. base + length - 1`
 * of `segment` and the pivots from `pivot[prow]` on, for the merged links `chosen` (ascending, unchecked);
 * returns the head's output slots. `flags` (at least `length`) is scratch. KVMerger's host plan calls it for the
 * heads it plans itself.
 *
 * Two passes without data-dependent branches: slots in order give each slot its group (a running count of
 * group starts) and each group its first slot, then the merged links in order move a group's pivot to the next
 * member where that member scores strictly higher. The links fall at random, so a branch per run boundary
 * mispredicts about every other time: at 32 x 16k a walk with one took 4.7-6.0 ms, this 3.6 ms.
 */
export function segmentHead(chosen: Int32Array, flags: Uint8Array, scores: ArrayLike<number>, base: number, length: number, segment: Int32Array, pivot: Int32Array, prow: number): number {
  flags.fill(0, 0, length);
  for (let j = 0; j < chosen.length; j++) flags[chosen[j]! + 1] = 1;
  let id = -1;
  let start = 0;
  for (let i = 0; i < length; i++) {
    const fresh = flags[i]! ^ 1;
    id += fresh;
    start += fresh * (i - start);
    segment[base + i] = id;
    pivot[prow + id] = start;
  }
  for (let j = 0; j < chosen.length; j++) {
    const i = chosen[j]! + 1;
    const at = prow + segment[base + i]!;
    const p = pivot[at]!;
    const better = +(val(scores[base + i]!) > val(scores[base + p]!));
    pivot[at] = p + better * (i - p);
  }
  return id + 1;
}
