import { createRequire } from 'node:module';
import type * as OrtCommon from 'onnxruntime-common';

/**
 * onnxruntime-common, loaded through its CommonJS build: that is the copy onnxruntime-node itself loads,
 * so `instanceof ort.Tensor` holds for tensors made here and tensors a user made with onnxruntime-node.
 * The ESM build would be a second, distinct `Tensor` class. onnxruntime-common is plain JavaScript, so
 * this module loads without the optional onnxruntime-node peer; only sessions need that.
 * @internal
 */
export const ort = createRequire(import.meta.url)('onnxruntime-common') as typeof OrtCommon;
