/**
 * @packageDocumentation
 * kvfold KVMerger policy (Wang et al. 2024, arXiv 2407.08454): keep the recent window and the heavy
 * hitters, merge runs of adjacent tokens with similar keys onto their highest-attention pivot with
 * Gaussian-kernel weights. Planning helpers are exported for tests and tools.
 */
import { definePlugin } from '@kvfold/core';
import { kvmergerPolicy } from './kvmerger.js';

export { KVMergerPolicy, kvmergerPolicy } from './kvmerger.js';
export {
  kvmergerSchema,
  resolveOptions,
  type KVMergerOptions,
  type ResolvedKVMergerOptions,
  type SigmaOption,
  type ResolvedSigma,
  type FixedSigma,
  type RmsSigma,
  type Eq4Sigma,
} from './options.js';
export { planLayer, linkRanking, candidateLinks, headMean, isIdentity, UNPROTECTED, RECENT, HEAVY, type PlanInput, type LayerPlan, type LinkRanking, type LinkSelection } from './plan.js';
export { protectSlots, type ProtectInput } from './protect.js';
export { planSigmas, rmsSigma, eq4Sigma, MIN_SIGMA, type HostKeys } from './sigma.js';

/** The plugin registering `kvmerger`. */
export default definePlugin({ name: '@kvfold/policy-kvmerger', policies: [kvmergerPolicy] });
