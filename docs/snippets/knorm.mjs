import { KVFold, createContext, disposeLayer, hostLayer, layerFromHost, layerToHost } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import knorm from '@kvfold/policy-knorm';

const kv = KVFold.create({ plugins: [reference, knorm] });
const kernels = await kv.backend('reference');
const policy = kv.policy('knorm');

// Eight slots of one kv head whose keys have norms 8, 1, 7, 2, 6, 3, 5, 4: Knorm keeps the lowest norms.
const norms = [8, 1, 7, 2, 6, 3, 5, 4];
const layer = layerFromHost(kernels, hostLayer({ heads: 1, length: 8, headDim: 2, keys: norms.flatMap((n) => [0, n]), values: new Float32Array(16) }));
const next = await policy.prefill(layer, {}, createContext({ kernels, budget: 4, promptLength: 8 }));
console.log(`knorm kept positions ${Array.from((await layerToHost(kernels, next)).positions.data).join(', ')} (key norms ${[1, 2, 3, 4].join(', ')})`);
disposeLayer(kernels, layer, next);
