import { ChainPolicy, ConfigError, definePolicy } from '@kvfold/core';
import { chainSchema, type ChainOptions } from './schema.js';

/**
 * Composition as configuration: the registered policies named in `policies`, applied in turn (core's
 * `ChainPolicy`, after kvpress's `ComposedPress`). E.g. KVMerger in paper mode, whose fixed threshold may
 * keep more than the budget, followed by `knorm` or `window` to cap the cache at the budget.
 */
export const chainPolicy = definePolicy<ChainOptions>({
  name: 'chain',
  description: 'Apply registered policies one after the other to the same layer and budget (only the first receives the observation), e.g. KVMerger in paper mode then knorm.',
  schema: chainSchema,
  create: (options, services) => {
    if (!services) throw new ConfigError([{ path: '', rule: 'services', message: 'chain builds the policies it names; create it with KVFold.policy("chain", ...)' }], 'options of policy "chain"');
    return new ChainPolicy('chain', options.policies.map((p) => services.policy(p.name, p.options ?? {})));
  },
});
