/**
 * @packageDocumentation
 * kvfold H2O policy: heavy-hitter oracle eviction by accumulated attention (Zhang et al., NeurIPS 2023).
 */
import { definePlugin } from '@kvfold/core';
import { h2oPolicy } from './h2o.js';

export { H2OPolicy, h2oPolicy } from './h2o.js';
export { h2oSchema, type H2OOptions } from './schema.js';

/** The plugin registering `h2o`. */
export default definePlugin({ name: '@kvfold/policy-h2o', policies: [h2oPolicy] });
