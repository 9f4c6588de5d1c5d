import type { NodeList } from '../graph.js';

/**
 * Nodes computing, per key of `keys [H, L, D]`, the power of two `2^-floor(log2 max|k|)` that brings its
 * largest element near 1 → `[H, L, 1]` (clamped to a finite float32 factor; 1 for a zero key). Scaling by
 * a power of two is exact, so a kernel that squares keys (norms, cosines) scales them first: float32
 * squares of keys above about 1.8e19 overflow, and of keys below about 1e-19 underflow, where the
 * reference's float64 sums do neither.
 */
export function keyScale(b: NodeList, keys: string): string {
  const m = b.reduce('ReduceMax', b.op('Abs', [keys]), [2], true);
  const e = b.op('Clip', [b.op('Floor', [b.op('Div', [b.op('Log', [m]), b.f32(Math.LN2, true)])]), b.f32(-126, true), b.f32(126, true)]);
  return b.op('Where', [b.op('Greater', [m, b.f32(0, true)]), b.op('Pow', [b.f32(2, true), b.op('Neg', [e])]), b.f32(1, true)]);
}
