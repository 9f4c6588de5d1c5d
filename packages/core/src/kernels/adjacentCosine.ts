import { defineKernel } from '../kernel-definition.js';
import type { HostTensor } from '../tensor.js';
import { f32, keysCall, type KeysCall } from './host.js';

/** A validated {@link KVKernels.adjacentCosine} call. */
export type AdjacentCosineCall<T = unknown> = KeysCall<T>;

/**
 * Cosine similarity of each key with the next one, float32 `[kvHeads, length - 1]` (`[kvHeads, 0]` for
 * an empty cache); 0 when either norm is 0. Accumulates in float64 and clamps to [-1, 1] so rounding
 * never reports a similarity above 1.
 * @throws DTypeError / ShapeError when `keys` is not float32 `[kvHeads, length, headDim]`.
 */
export const adjacentCosineKernel = defineKernel({
  name: 'adjacentCosine',
  description: 'Cosine similarity of each key with the next one, float32 [kvHeads, length - 1] (0 when a norm is 0).',
  validate: (check, keys: unknown): AdjacentCosineCall => keysCall(check, keys, 'adjacentCosine'),
  reference: adjacentCosine,
});

function adjacentCosine({ keys, shape }: AdjacentCosineCall<HostTensor>): HostTensor<'float32'> {
  const k = keys.data as Float32Array;
  const [H, L, D] = shape;
  const M = L > 0 ? L - 1 : 0;
  const out = new Float32Array(H * M);
  for (let h = 0; h < H; h++) {
    const base = h * L * D;
    if (L === 0) continue;
    // One pass per neighbour pair: the next key's squared norm is accumulated alongside the dot product
    // and carried over, so every key is read once (plus once more as the left side of the next pair).
    let n0 = 0;
    for (let d = 0; d < D; d++) n0 += k[base + d]! * k[base + d]!;
    for (let i = 0; i < M; i++) {
      const a = base + i * D;
      const b = a + D;
      let dot = 0;
      let n1 = 0;
      for (let d = 0; d < D; d++) {
        const y = k[b + d]!;
        dot += k[a + d]! * y;
        n1 += y * y;
      }
      const den = Math.sqrt(n0) * Math.sqrt(n1);
      let c = den > 0 ? dot / den : 0;
      if (c > 1) c = 1;
      else if (c < -1) c = -1;
      out[h * M + i] = c;
      n0 = n1;
    }
  }
  return f32([H, M], out);
}
