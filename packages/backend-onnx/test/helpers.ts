import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createOnnxKernels, defaultNativeDir, type OnnxKernels } from '../src/index.js';

export { mulberry32 as rng, randInt, randomLayer, randomF32, expectClose, layerHost, expectLayerClose } from '@kvfold/testkit';

/** True when `pnpm --filter @kvfold/backend-onnx build:native` has produced a build here. */
export const nativeBuilt = existsSync(join(defaultNativeDir(), 'manifest.json'));

/** The kernel paths to test: function bodies always, native CPU kernels when built. */
export function variants(): { name: string; make: () => OnnxKernels }[] {
  const v = [{ name: 'function bodies', make: () => createOnnxKernels({ native: 'off', threads: 1 }) }];
  // observeKernel 'native': on CPU observe defaults to its function body, and the native kernel needs testing too.
  if (nativeBuilt) v.push({ name: 'native CPU kernels', make: () => createOnnxKernels({ native: 'require', threads: 2, observeKernel: 'native' }) });
  return v;
}
