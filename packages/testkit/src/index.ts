/**
 * @packageDocumentation
 * Tools for policy and backend authors: synthetic caches with realistic key locality, attention-fidelity
 * metrics, {@link checkPolicy} (the invariant matrix every kvfold policy, plugins included, must pass on
 * every backend), and the shared test helpers (random tensors and plans, parity comparisons, tracked
 * kernels that catch leaks).
 */
export * from './synthetic.js';
export * from './fidelity.js';
export * from './matrix.js';
export * from './random.js';
export * from './compare.js';
export * from './tracked.js';
export * from './backend-run.js';
export * from './models.js';
export * from './policies.js';
