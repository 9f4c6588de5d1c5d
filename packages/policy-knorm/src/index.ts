/**
 * @packageDocumentation
 * kvfold Knorm policy (Devoto et al., EMNLP 2024): keep the keys of lowest L2 norm, a scorer that needs no
 * attention and runs on the `keyNorms` kernel.
 */
import { definePlugin } from '@kvfold/core';
import { knormPolicy } from './knorm.js';

export { KnormPolicy, knormPolicy } from './knorm.js';
export { knormSchema, type KnormOptions } from './schema.js';

/** The plugin registering `knorm`. */
export default definePlugin({ name: '@kvfold/policy-knorm', policies: [knormPolicy] });
