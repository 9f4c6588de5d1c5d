import { defineKernel } from '../kernel-definition.js';
import type { HostTensor } from '../tensor.js';
import { f32, freshAllocator, keysCall, type KeysCall } from './host.js';

/** A validated {@link KVKernels.adjacentCosine} call. */
export type AdjacentCosineCall<T = unknown> = KeysCall<T>;

/**
 * Squared norms inside `[2^-60, 2^100]` take the float32 lane sums: no square there has underflowed enough
 * to matter (what did is below 2^-59 of the norm) and no product or partial sum can overflow.
 */
export const ADJACENT_COSINE_LANE_RANGE: readonly [number, number] = [2 ** -60, 2 ** 100];

/**
 * Cosine similarity of each key with the next one, float32 `[kvHeads, length - 1]` (`[kvHeads, 0]` for
 * an empty cache); 0 when either norm is 0, clamped to [-1, 1] so rounding never reports a similarity above 1.
 * The dot product and squared norms are summed in four float32 lanes (element d in lane d mod 4, in index
 * order), the lanes added pairwise in float64, which a SIMD kernel reproduces bit for bit at memory speed; a
 * pair with a squared norm outside {@link ADJACENT_COSINE_LANE_RANGE} (or not finite) is summed in float64
 * instead. Within about 1e-6 of a float64 cosine.
 * @throws DTypeError / ShapeError when `keys` is not float32 `[kvHeads, length, headDim]`.
 */
export const adjacentCosineKernel = defineKernel({
  name: 'adjacentCosine',
  description: 'Cosine similarity of each key with the next one, float32 [kvHeads, length - 1] (0 when a norm is 0).',
  validate: (check, keys: unknown): AdjacentCosineCall => keysCall(check, keys, 'adjacentCosine'),
  reference: adjacentCosine,
});

const fr = Math.fround;

/**
 * `a·b` and `b·b` over rows at `a` and `b` of `k` in four float32 lanes, each lane pair-summed in float64,
 * into `out[0]`, `out[1]`.
 */
function laneSums(k: Float32Array, a: number, b: number, D: number, out: Float64Array): void {
  let p0 = 0, p1 = 0, p2 = 0, p3 = 0, q0 = 0, q1 = 0, q2 = 0, q3 = 0;
  let d = 0;
  for (; d + 3 < D; d += 4) {
    const y0 = k[b + d]!, y1 = k[b + d + 1]!, y2 = k[b + d + 2]!, y3 = k[b + d + 3]!;
    p0 = fr(p0 + fr(k[a + d]! * y0));
    p1 = fr(p1 + fr(k[a + d + 1]! * y1));
    p2 = fr(p2 + fr(k[a + d + 2]! * y2));
    p3 = fr(p3 + fr(k[a + d + 3]! * y3));
    q0 = fr(q0 + fr(y0 * y0));
    q1 = fr(q1 + fr(y1 * y1));
    q2 = fr(q2 + fr(y2 * y2));
    q3 = fr(q3 + fr(y3 * y3));
  }
  // The tail (D mod 4 elements) goes into lanes 0, 1, 2.
  if (d < D) {
    const y = k[b + d]!;
    p0 = fr(p0 + fr(k[a + d]! * y));
    q0 = fr(q0 + fr(y * y));
  }
  if (d + 1 < D) {
    const y = k[b + d + 1]!;
    p1 = fr(p1 + fr(k[a + d + 1]! * y));
    q1 = fr(q1 + fr(y * y));
  }
  if (d + 2 < D) {
    const y = k[b + d + 2]!;
    p2 = fr(p2 + fr(k[a + d + 2]! * y));
    q2 = fr(q2 + fr(y * y));
  }
  out[0] = p0 + p1 + (p2 + p3);
  out[1] = q0 + q1 + (q2 + q3);
}

/** The float64 cosine of rows `a` and `b` (even and odd elements in two accumulators each), clamped. */
function cosine64(k: Float32Array, a: number, b: number, D: number): number {
  let dot0 = 0, dot1 = 0, na0 = 0, na1 = 0, nb0 = 0, nb1 = 0;
  let d = 0;
  for (; d + 1 < D; d += 2) {
    const x0 = k[a + d]!, x1 = k[a + d + 1]!, y0 = k[b + d]!, y1 = k[b + d + 1]!;
    dot0 += x0 * y0;
    dot1 += x1 * y1;
    na0 += x0 * x0;
    na1 += x1 * x1;
    nb0 += y0 * y0;
    nb1 += y1 * y1;
  }
  if (d < D) {
    const x = k[a + d]!, y = k[b + d]!;
    dot0 += x * y;
    na0 += x * x;
    nb0 += y * y;
  }
  return clampedCosine(dot0 + dot1, na0 + na1, nb0 + nb1);
}

function clampedCosine(dot: number, na: number, nb: number): number {
  const den = Math.sqrt(na) * Math.sqrt(nb);
  const c = den > 0 ? dot / den : 0;
  return c > 1 ? 1 : c < -1 ? -1 : c;
}

function adjacentCosine({ keys, shape }: AdjacentCosineCall<HostTensor>, alloc = freshAllocator): HostTensor<'float32'> {
  const k = keys.data as Float32Array;
  const [H, L, D] = shape;
  const M = L > 0 ? L - 1 : 0;
  const out = alloc.float32(H * M);
  const [lo, hi] = ADJACENT_COSINE_LANE_RANGE;
  const s = new Float64Array(2);
  for (let h = 0; h < H; h++) {
    if (L === 0) continue;
    const base = h * L * D;
    // The next key's squared norm is summed alongside the dot product and carried over, so every key is
    // read once more than the first.
    laneSums(k, base, base, D, s);
    let n0 = s[1]!;
    for (let i = 0; i < M; i++) {
      const a = base + i * D;
      laneSums(k, a, a + D, D, s);
      const n1 = s[1]!;
      out[h * M + i] = n0 >= lo && n0 <= hi && n1 >= lo && n1 <= hi ? clampedCosine(s[0]!, n0, n1) : cosine64(k, a, a + D, D);
      n0 = n1;
    }
  }
  return f32([H, M], out);
}
