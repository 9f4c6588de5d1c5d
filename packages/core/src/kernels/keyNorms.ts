import { defineKernel } from '../kernel-definition.js';
import type { HostTensor } from '../tensor.js';
import { f32, keysCall, type KeysCall } from './host.js';

/** A validated {@link KVKernels.keyNorms} call. */
export type KeyNormsCall<T = unknown> = KeysCall<T>;

/**
 * L2 norm of each key, float32 `[kvHeads, length]` (0 for `headDim` 0). Squares accumulate in float64,
 * rounded to float32 once per slot. Knorm ranks slots by it without any attention.
 * @throws DTypeError / ShapeError when `keys` is not float32 `[kvHeads, length, headDim]`.
 */
export const keyNormsKernel = defineKernel({
  name: 'keyNorms',
  description: 'L2 norm of each key, float32 [kvHeads, length].',
  validate: (check, keys: unknown): KeyNormsCall => keysCall(check, keys, 'keyNorms'),
  reference({ keys, shape }: KeyNormsCall<HostTensor>): HostTensor<'float32'> {
    const [H, L, D] = shape;
    const k = keys.data as Float32Array;
    const out = new Float32Array(H * L);
    for (let r = 0; r < H * L; r++) {
      let s = 0;
      for (let d = r * D; d < (r + 1) * D; d++) s += k[d]! * k[d]!;
      out[r] = Math.sqrt(s);
    }
    return f32([H, L], out);
  },
});
