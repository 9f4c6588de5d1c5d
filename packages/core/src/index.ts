/**
 * @packageDocumentation
 * kvfold core: the data model of a layer's KV cache, the {@link KVCachePolicy} and {@link KVKernels}
 * contracts, the kernel registry (every kernel's validation and reference implementation, written once),
 * per-instance DI ({@link KVFold}), registries, plugins, the composed config schema and typed errors.
 */
import 'reflect-metadata';

export * from './errors.js';
export * from './tensor.js';
export * from './kernels.js';
export * from './kernel-check.js';
export * from './kernel-definition.js';
export * from './kernel-backend.js';
export * from './kernel-registry.js';
export * from './kernel-dispatch.js';
export * from './kernels/index.js';
export * from './host.js';
export * from './buffer-pool.js';
export * from './host-scratch.js';
export * from './rng.js';
export * from './logger.js';
export * from './budget.js';
export * from './policy.js';
export * from './backend.js';
export * from './plugin.js';
export * from './registry.js';
export * from './config.js';
export * from './json.js';
export * from './files.js';
export * from './guard.js';
export * from './context.js';
export * from './tokens.js';
export * from './kvfold.js';
export * from './cache-manager.js';
export * from './decoding.js';
export * from './answer.js';
export * from './scoring/select.js';
export * from './scoring/decode.js';
export * from './scoring/parts.js';
export * from './scoring/scorer-policy.js';
export * from './scoring/per-layer-budget.js';
export * from './scoring/chain.js';
export * from './scoring/in-place.js';
export * from './scoring/in-place-select.js';
