/**
 * @packageDocumentation
 * kvfold CaM policy: cache merging of evicted values into their kept neighbours (Zhang et al., ICML 2024).
 */
import { definePlugin } from '@kvfold/core';
import { camPolicy } from './cam.js';

export { CaMPolicy, camPolicy } from './cam.js';
export { camSchema, type CaMOptions } from './schema.js';
export { checkKeep, type KeepChooser, type KeepChooserInput } from './choosers.js';
export { planNeighbourMerge, type GateMode, type HostNeighbourMergePlan } from './plan.js';

/** The plugin registering `cam`. */
export default definePlugin({ name: '@kvfold/policy-cam', policies: [camPolicy] });
