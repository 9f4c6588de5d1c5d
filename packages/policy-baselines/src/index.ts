/**
 * @packageDocumentation
 * kvfold baseline policies: `full` (no compression), `window` (StreamingLLM sink + recent window) and
 * `random` (seeded random eviction outside a recent window).
 */
import { definePlugin } from '@kvfold/core';
import { fullPolicy } from './full.js';
import { randomPolicy } from './random.js';
import { windowPolicy } from './window.js';

export { FullPolicy, fullPolicy, fullSchema, type FullOptions } from './full.js';
export { WindowPolicy, windowPolicy, windowSchema, type WindowOptions } from './window.js';
export { RandomPolicy, randomPolicy, randomSchema, type RandomOptions } from './random.js';

/** The plugin registering `full`, `window` and `random`. */
export default definePlugin({ name: '@kvfold/policy-baselines', policies: [fullPolicy, windowPolicy, randomPolicy] });
