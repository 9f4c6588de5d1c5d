import { expectInt } from '../kernel-check.js';
import { defineKernel } from '../kernel-definition.js';
import type { HostTensor } from '../tensor.js';
import { freshAllocator, i32 } from './host.js';

/** A validated {@link KVKernels.topK} call. */
export interface TopKCall<T = unknown> {
  /** float32 `[kvHeads, length]`. */
  readonly scores: T;
  /** Slots picked per head. */
  readonly k: number;
  /** First slot of the window. */
  readonly from: number;
  /** End of the window (exclusive). */
  readonly to: number;
  /** kv heads. */
  readonly heads: number;
  /** Slots per head. */
  readonly length: number;
}

/**
 * Check the window arguments of a top-k selection over `length` slots (shared with fused kernels that
 * select, such as the onnx backend's accumulateTopK).
 * @throws ShapeError unless `0 <= from <= to <= length` and `0 <= k <= to - from` are integers.
 */
export function checkWindow(kernel: string, length: number, k: number, from: number, to: number): void {
  expectInt(from, `${kernel} from`, 0, length);
  expectInt(to, `${kernel} to`, from, length);
  expectInt(k, `${kernel} k (at most to - from)`, 0, to - from);
}

/**
 * Indices of the `k` highest scores of each head among slots `[from, to)`, sorted ascending by slot
 * index, int32 `[kvHeads, k]`. Ties go to the lower slot index; NaN ranks as `-Infinity` (below every
 * number, ties with `-Infinity` broken by index), so a non-finite score never makes the result
 * depend on the algorithm.
 *
 * Per head: every score becomes an order-preserving uint32 key (NaN as `-Infinity`, `-0` as `0`), a radix
 * selection (three histogram passes of 11, 11 and 10 bits) finds the `k`-th best key, and one pass in slot
 * order keeps every slot above it and the first slots equal to it (ties to the lower slot), already
 * ascending: O(m) for `m = to - from`, with no sort and no comparison-based selection.
 * @throws ShapeError unless `0 <= from <= to <= length` and `0 <= k <= to - from` are integers.
 */
export const topKKernel = defineKernel({
  name: 'topK',
  description: 'Indices of the k highest scores of each head among slots [from, to), ascending by slot (ties to the lower slot).',
  validate(check, scores: unknown, k: number, from: number, to: number): TopKCall {
    const [heads, length] = check.tensor(scores, 'topK scores', 'float32', 2) as [number, number];
    checkWindow('topK', length, k, from, to);
    return { scores, k, from, to, heads, length };
  },
  reference: topK,
});

function topK({ scores, k, from, to, heads: H, length: L }: TopKCall<HostTensor>, alloc = freshAllocator): HostTensor<'int32'> {
  const s = scores.data as Float32Array;
  const m = to - from;
  const out = alloc.int32(H * k);
  if (k === 0) return i32([H, 0], out);
  if (k === m) {
    for (let h = 0; h < H; h++) for (let j = 0; j < k; j++) out[h * k + j] = from + j;
    return i32([H, k], out);
  }
  const bits = new Int32Array(s.buffer, s.byteOffset, s.length);
  const key = new Int32Array(m);
  const hist = new Int32Array(RADIX_BINS);
  for (let h = 0; h < H; h++) radixSelect(bits, h * L + from, m, k, from, out, h * k, key, hist);
  return i32([H, k], out);
}

/** Histogram size of {@link topK}'s widest radix digit (11 bits). */
const RADIX_BINS = 2048;

/**
 * Radix selection of the `k` best of the `m` float32 values whose bit patterns (as int32) start at
 * `bits[base]` (`0 < k < m`): writes `offset + i` for each winner `i`, ascending, to `out` from `at`.
 * `key` (length >= m) and `hist` (RADIX_BINS) are scratch.
 *
 * Keys are the uint32 rank keys ({@link rankKey}) held in int32 lanes: V8 keeps int32 values unboxed,
 * while uint32 values above 2^31 become doubles in every bitwise step. Only the final comparison needs
 * the unsigned order, which flipping the top bit gives in signed arithmetic.
 */
function radixSelect(bits: Int32Array, base: number, m: number, k: number, offset: number, out: Int32Array, at: number, key: Int32Array, hist: Int32Array): void {
  // Keys and the first (top 11 bits) histogram in one pass.
  hist.fill(0);
  for (let i = 0; i < m; i++) {
    const x = rankKey(bits[base + i]!);
    key[i] = x;
    hist[x >>> 21]!++;
  }
  // Radix selection of the k-th largest key: `need` counts the winners still to place at or below the
  // current prefix; what is left after the last digit is how many keys equal to the threshold win.
  let b = 2047;
  let need = k;
  while (hist[b]! < need) need -= hist[b--]!;
  let prefix = b << 21;
  let mask = 2047 << 21;
  for (let shift = 10; shift >= 0; shift -= 10) {
    const width = shift === 0 ? 1023 : 2047;
    hist.fill(0, 0, width + 1);
    for (let i = 0; i < m; i++) {
      const x = key[i]!;
      if ((x & mask) === prefix) hist[(x >>> shift) & width]!++;
    }
    b = width;
    while (hist[b]! < need) need -= hist[b--]!;
    prefix |= b << shift;
    mask |= width << shift;
  }
  const t = prefix ^ SIGN;
  let ties = need;
  let j = at;
  for (let i = 0; i < m; i++) {
    const x = key[i]! ^ SIGN;
    if (x > t || (x === t && ties-- > 0)) out[j++] = offset + i;
  }
}

/** The int32 sign bit: xor with it maps unsigned order onto signed order. */
const SIGN = 0x80000000 | 0;

/**
 * Indices of the `k` highest of `values`, ascending by index: the topK kernel's ranking (ties to the lower
 * index, NaN lowest, `-0` equal to `0`) and its O(n) radix selection, for host planning over float32 rows.
 * `k` is clamped to `[0, values.length]`.
 */
export function selectTopFloat32(values: Float32Array, k: number): Int32Array {
  const m = values.length;
  const n = Math.max(0, Math.min(m, Math.floor(k)));
  const out = new Int32Array(n);
  if (n === m) {
    for (let i = 0; i < n; i++) out[i] = i;
    return out;
  }
  if (n === 0) return out;
  radixSelect(new Int32Array(values.buffer, values.byteOffset, m), 0, m, n, 0, out, 0, new Int32Array(m), new Int32Array(RADIX_BINS));
  return out;
}

/**
 * A float32's bit pattern (as int32) as a rank key: uint32 bits, held in an int32, whose unsigned order
 * is the ranking's: NaN as `-Infinity` (lowest), `-0` as `0` (equal scores tie), negative values below
 * positive ones.
 */
function rankKey(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) b = 0xff800000 | 0;
  else if (b === SIGN) b = 0;
  return b < 0 ? ~b : b | SIGN;
}

/** Strict total order of the ranking: higher value first, then lower index. */
function better(val: Float64Array, a: number, b: number): boolean {
  const x = val[a]!;
  const y = val[b]!;
  return x > y || (x === y && a < b);
}

/**
 * Rearrange `idx` (indices into `val`) so its first `k` entries are the `k` best, in any order: highest
 * `val` first, ties to the lower index (`val` must hold no NaN). Wirth/Hoare quickselect with a
 * median-of-three pivot, O(n) on average; the order of the rest is unspecified. For host planning that
 * needs a top-k set without sorting every candidate.
 */
export function selectBest(idx: Int32Array, val: Float64Array, k: number): void {
  if (k <= 0 || k >= idx.length) return;
  const target = k - 1;
  let lo = 0;
  let hi = idx.length - 1;
  while (lo < hi) {
    if (hi === lo + 1) {
      // Two left: order them. (The median-of-three below needs three distinct cells.)
      if (better(val, idx[hi]!, idx[lo]!)) {
        const t = idx[lo]!;
        idx[lo] = idx[hi]!;
        idx[hi] = t;
      }
      return;
    }
    const mid = (lo + hi) >>> 1;
    // Median of three: guards against sorted or reverse-sorted inputs, common for scores by position.
    let a = idx[lo]!;
    let b = idx[mid]!;
    let c = idx[hi]!;
    if (better(val, b, a)) { const t = a; a = b; b = t; }
    if (better(val, c, b)) { const t = b; b = c; c = t; if (better(val, b, a)) { const u = a; a = b; b = u; } }
    idx[lo] = a;
    idx[mid] = b;
    idx[hi] = c;
    const pivot = b;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (better(val, idx[i]!, pivot)) i++;
      while (better(val, pivot, idx[j]!)) j--;
      if (i <= j) {
        const t = idx[i]!;
        idx[i] = idx[j]!;
        idx[j] = t;
        i++;
        j--;
      }
    }
    if (j < target) lo = i;
    if (target < i) hi = j;
  }
}
