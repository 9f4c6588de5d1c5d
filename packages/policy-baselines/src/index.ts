/**
 * @packageDocumentation
 * kvfold baseline policies: `full` (no compression), `window` (StreamingLLM sink + recent window),
 * `random` (seeded random eviction outside a recent window), and `chain` (registered policies applied in turn).
 */
import { definePlugin } from '@kvfold/core';
import { chainPolicy } from './chain.js';
import { fullPolicy } from './full.js';
import { randomPolicy } from './random.js';
import { windowPolicy } from './window.js';

export { FullPolicy, fullPolicy } from './full.js';
export { WindowPolicy, windowPolicy } from './window.js';
export { RandomPolicy, randomPolicy } from './random.js';
export { chainPolicy } from './chain.js';
export { fullSchema, windowSchema, randomSchema, chainSchema, type FullOptions, type WindowOptions, type RandomOptions, type ChainOptions, type ChainStep } from './schema.js';

/** The plugin registering `full`, `window`, `random` and `chain`. */
export default definePlugin({ name: '@kvfold/policy-baselines', policies: [fullPolicy, windowPolicy, randomPolicy, chainPolicy] });
