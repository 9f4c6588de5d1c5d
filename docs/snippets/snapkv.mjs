import { KVFold, createContext, createRng, disposeLayer, hostLayer, layerFromHost, layerToHost } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import snapkv from '@kvfold/policy-snapkv';

const kv = KVFold.create({ plugins: [reference, snapkv] });
const kernels = await kv.backend('reference');
const policy = kv.policy('snapkv', { window: 16 });

// A prompt of 256 tokens, one kv head, and its queries: the last 16 (the observation window) look for token 40.
const heads = 1, length = 256, headDim = 32;
const rng = createRng(3);
const keys = Float32Array.from({ length: length * headDim }, () => rng.next() - 0.5);
const values = Float32Array.from(keys, () => rng.next() - 0.5);
const queries = Float32Array.from({ length: length * headDim }, () => rng.next() - 0.5);
for (let t = length - 16; t < length; t++) for (let d = 0; d < headDim; d++) queries[t * headDim + d] = 40 * keys[40 * headDim + d];
const layer = layerFromHost(kernels, hostLayer({ heads, length, headDim, keys, values }));
const observed = { queries: kernels.fromHost({ dtype: 'float32', shape: [heads, length, headDim], data: queries }) };

const next = await policy.prefill(layer, observed, createContext({ kernels, budget: 32, promptLength: length, newTokens: length }));
const kept = Array.from((await layerToHost(kernels, next)).positions.data);
const ranked = kept.filter((p) => p < length - 16);
console.log(`snapkv kept ${kept.length} of ${length} slots: the window (${kept.length - ranked.length} slots) and ${ranked.length} ranked by its pooled attention`);
console.log(`token 40 and its pooling neighbours kept: ${[38, 39, 40, 41, 42].every((p) => ranked.includes(p))}`);
kernels.dispose(observed.queries);
disposeLayer(kernels, layer, next);
