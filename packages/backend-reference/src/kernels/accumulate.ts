import type { HostTensor } from '@kvfold/core';
import { expectShape, f32, tensorData } from '../validate.js';

/**
 * Element-wise `scores + attention` (H2O's score update), both float32 `[kvHeads, length]`.
 * @throws ShapeError when the shapes differ; DTypeError when either is not float32.
 */
export function accumulate(scores: HostTensor, attention: HostTensor): HostTensor<'float32'> {
  const a = tensorData(scores, 'accumulate scores', 'float32', 2);
  const b = tensorData(attention, 'accumulate attention', 'float32', 2);
  expectShape(attention.shape, scores.shape, 'accumulate attention');
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]!;
  return f32([...scores.shape], out);
}
