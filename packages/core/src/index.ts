/**
 * @packageDocumentation
 * kvfold core: the data model of a layer's KV cache, the {@link KVCachePolicy} and {@link KVKernels}
 * contracts, per-instance DI ({@link KVFold}), registries, plugins, the composed config schema and typed errors.
 */
import 'reflect-metadata';

export * from './errors.js';
export * from './tensor.js';
export * from './kernels.js';
export * from './host.js';
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
export * from './decoding.js';
export * from './answer.js';
