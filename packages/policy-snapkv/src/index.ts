/**
 * @packageDocumentation
 * kvfold SnapKV and PyramidKV policies (Li et al., NeurIPS 2024; Cai et al., 2024): scorer policies whose
 * score is the pooled attention of the last prompt queries; PyramidKV adds a per-layer budget schedule.
 */
import { definePlugin } from '@kvfold/core';
import { pyramidkvPolicy } from './pyramidkv.js';
import { snapkvPolicy } from './snapkv.js';

export { SnapKVPolicy, snapkvPolicy } from './snapkv.js';
export { createPyramidKV, pyramidkvPolicy } from './pyramidkv.js';
export { snapkvSchema, pyramidkvSchema, type SnapKVOptions, type PyramidKVOptions } from './schema.js';

/** The plugin registering `snapkv` and `pyramidkv`. */
export default definePlugin({ name: '@kvfold/policy-snapkv', policies: [snapkvPolicy, pyramidkvPolicy] });
