import { ShapeError } from '../errors.js';
import type { KVKernels, LayerCache } from '../kernels.js';
import { hostTensor, type HostTensor } from '../tensor.js';

/**
 * `tensor`'s own memory to read on the host, where the backend exposes it ({@link KVKernels.hostView}, or a
 * read-only {@link KVKernels.editView}: tfjs's wasm heap); undefined elsewhere. Read it before the next kernel
 * call, upload or `await` (a view of a WebAssembly heap that grows moves, and an `await` lets other work call
 * the kernels), never write to it, and download only when there is no view: `viewNow(k, t) ?? (await
 * k.toHost(t))`, which awaits nothing when a view exists. A download allocates a fresh array per call, whose
 * first writes cost page faults: 1.0-1.4 ms for 32 x 16,384 float32 from tfjs's wasm heap, against 0.1 ms to
 * copy from its view into a reused array.
 */
export function viewNow<T>(k: KVKernels<T>, tensor: T): HostTensor | undefined {
  return k.hostView?.(tensor) ?? k.editView?.(tensor, false);
}

/**
 * Which slots a head keeps: `budget` slots made of the first `sink`, the last `recent`, and the highest
 * scores among the slots between them.
 */
export interface Selection {
  /** Slots kept per head. */
  readonly budget: number;
  /** Leading slots always kept (attention sinks); clamped to the budget. Default 0. */
  readonly sink?: number;
  /** Trailing (most recent) slots always kept; clamped to what the sinks leave of the budget. Default 0. */
  readonly recent?: number;
  /**
   * An array of at least `heads * budget` entries to write the result into (its first `heads * budget`
   * are returned as a view): a policy that selects on every call reuses one instead of a fresh array,
   * whose first writes cost page faults. Default: a fresh array.
   */
  readonly into?: Int32Array;
}

/**
 * The one selection every evicting policy shares ("protect sink and recent, keep the top scores"): per
 * head, the first `sink` slots, then the `budget - sink - recent` highest `scores` among slots
 * `[sink, length - recent)` (ranked by the backend's `topK` kernel: ties to the lower slot, NaN lowest),
 * then the last `recent` slots. Returns the kept slot indices, ascending per head, row-major
 * `[heads, budget]` on the host (policies that merge plan from them; {@link keepSlots} gathers them).
 *
 * `scores` is float32 `[heads, length]`, or `[1, length]` to make one decision for every head (TOVA's
 * layer-wide rule, KVMerger's shared sets). It may be omitted when sink and recent fill the budget.
 * Requires `length > budget` (under budget nothing is selected).
 * @throws ShapeError when scores are needed but missing, or `length <= budget`.
 */
export async function selectSlots<T>(k: KVKernels<T>, scores: T | undefined, heads: number, length: number, selection: Selection): Promise<Int32Array> {
  const budget = selection.budget;
  if (length <= budget) throw new ShapeError(`selectSlots: the cache (${length} slots) already fits the budget (${budget})`, { field: 'budget', length, budget });
  const sink = Math.max(0, Math.min(selection.sink ?? 0, budget));
  const recent = Math.max(0, Math.min(selection.recent ?? 0, budget - sink));
  const top = budget - sink - recent;
  const end = length - recent;
  if (selection.into !== undefined && selection.into.length < heads * budget) {
    throw new ShapeError(`selectSlots: into holds ${selection.into.length} entries; ${heads} heads x ${budget} slots need ${heads * budget}`, { field: 'into', length: selection.into.length, needed: heads * budget });
  }
  const keep = selection.into === undefined ? new Int32Array(heads * budget) : selection.into.subarray(0, heads * budget);
  // The sink and recent slots are the same in every head: written once into the first row, copied to the others.
  for (let j = 0; j < sink && heads > 0; j++) keep[j] = j;
  for (let j = 0; j < recent && heads > 0; j++) keep[sink + top + j] = end + j;
  for (let h = 1; h < heads; h++) keep.copyWithin(h * budget, 0, budget);
  if (top > 0) {
    if (scores === undefined) throw new ShapeError(`selectSlots: ${top} slots per head are chosen by score, but no scores were given`, { field: 'scores' });
    const rows = k.shapeOf(scores)[0]!;
    const index = k.topK(scores, top, sink, end);
    try {
      // Where the backend exposes the index's memory (reference, onnx on CPU, tfjs's wasm heap), the winners are
      // read in place: copied into `keep` here, before any other call, so the download's copy is not needed.
      const chosen = (viewNow(k, index) ?? (await k.toHost(index))).data;
      for (let h = 0; h < heads; h++) {
        const from = (rows === 1 ? 0 : h) * top;
        keep.set(chosen.subarray(from, from + top), h * budget + sink);
      }
    } finally {
      k.dispose(index);
    }
  }
  return keep;
}

/** Upload a row-major `[heads, n]` host array (an index or a plan field) to the backend. */
export function uploadRows<T>(k: KVKernels<T>, dtype: 'int32' | 'float32', heads: number, data: Int32Array | Float32Array): T {
  return k.fromHost(hostTensor(dtype, [heads, heads === 0 ? 0 : data.length / heads], data));
}

/**
 * Gather the slots listed in `keep` (row-major `[heads, kept]`, ascending per head) into a new layer:
 * the index is uploaded, gathered and released here, the one way every policy drops slots.
 */
export function keepSlots<T>(k: KVKernels<T>, layer: LayerCache<T>, keep: Int32Array): LayerCache<T> {
  const index = uploadRows(k, 'int32', k.shapeOf(layer.keys)[0]!, keep);
  try {
    return k.gather(layer, index);
  } finally {
    k.dispose(index);
  }
}
