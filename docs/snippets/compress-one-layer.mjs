import { KVFold, createContext, createRng, disposeLayer, hostLayer, layerFromHost, layerToHost } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import kvmerger from '@kvfold/policy-kvmerger';

const kv = KVFold.create({ plugins: [reference, kvmerger] });
const kernels = await kv.backend('reference');
const policy = kv.policy('kvmerger');

// One layer's cache, laid out [kvHeads, length, headDim]: keys drift slowly, so neighbours look alike.
const heads = 2, length = 1024, headDim = 64;
const rng = createRng(7);
const keys = new Float32Array(heads * length * headDim);
const values = Float32Array.from(keys, () => rng.next() - 0.5);
for (let h = 0; h < heads; h++)
  for (let d = 0; d < headDim; d++)
    for (let t = 0, x = 0; t < length; t++) keys[(h * length + t) * headDim + d] = x += rng.next() - 0.5;
const layer = layerFromHost(kernels, hostLayer({ heads, length, headDim, keys, values }));

// What attention saw: the last 32 tokens' queries (here their own keys), at their positions.
const n = 32;
const queries = new Float32Array(heads * n * headDim);
for (let h = 0; h < heads; h++) queries.set(keys.subarray((h * length + length - n) * headDim, (h + 1) * length * headDim), h * n * headDim);
const seen = kernels.observe(
  layer,
  kernels.fromHost({ dtype: 'float32', shape: [heads, n, headDim], data: queries }),
  kernels.fromHost({ dtype: 'int32', shape: [n], data: Int32Array.from({ length: n }, (_, i) => length - n + i) }),
);

const budget = Math.round(0.35 * length);
// `seen` is { attention, lastAttention }: the Observation a policy takes, as it is.
const compressed = await policy.prefill(layer, seen, createContext({ kernels, budget, promptLength: length }));
const { counts } = await layerToHost(kernels, compressed);
const merged = counts.data.filter((c) => c > 1).length;
console.log(`kvmerger kept ${counts.shape[1]} of ${length} slots per kv head; ${merged} of the ${heads * counts.shape[1]} kept slots are merges of several tokens`);
disposeLayer(kernels, layer, compressed); // the policy never frees its input: you swap in its result
