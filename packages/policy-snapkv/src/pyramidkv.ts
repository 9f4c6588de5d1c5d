import { PerLayerBudgetPolicy, definePolicy, pyramidSchedule } from '@kvfold/core';
import { pyramidkvSchema, type PyramidKVOptions } from './schema.js';
import { SnapKVPolicy } from './snapkv.js';

/**
 * PyramidKV (Cai et al., "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information
 * Funneling", arXiv 2406.02069; kvpress `PyramidKVPress`): SnapKV's scores with budgets that fall linearly
 * from the bottom layer to the top one and average to the uniform budget (core's `pyramidSchedule`), as a
 * per-layer budget wrapper around {@link SnapKVPolicy}.
 */
export function createPyramidKV(options: Partial<PyramidKVOptions> = {}): PerLayerBudgetPolicy {
  const { beta = 20, ...snap } = options;
  const inner = new SnapKVPolicy(snap);
  return new PerLayerBudgetPolicy('pyramidkv', inner, pyramidSchedule(beta, inner.options.window));
}

/** Registry definition of PyramidKV (see {@link createPyramidKV}). */
export const pyramidkvPolicy = definePolicy<PyramidKVOptions>({
  name: 'pyramidkv',
  description: 'SnapKV scores with per-layer budgets falling linearly from the bottom layer to the top one, averaging to the budget (PyramidKV, Cai et al. 2024).',
  schema: pyramidkvSchema,
  create: (options) => createPyramidKV(options),
});
