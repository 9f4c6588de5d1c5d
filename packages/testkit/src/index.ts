/**
 * @packageDocumentation
 * Tools for policy authors: synthetic caches with realistic key locality, attention-fidelity metrics,
 * and {@link checkPolicy}, the invariant matrix every kvfold policy (plugins included) must pass.
 */
export * from './synthetic.js';
export * from './fidelity.js';
export * from './matrix.js';
