import { SPECIFICATION_VERSION, definePolicy, type LayerCache, type ObservationNeed, type PolicyDefinition } from '@kvfold/core';

/**
 * A policy that returns its input unchanged and declares `needs`: the smallest thing to register when a
 * test is about what surrounds a policy (the guard, plugin registration, a runtime), not the policy.
 */
export function passThroughPolicy(name: string, needs: readonly ObservationNeed[] = []): PolicyDefinition<Record<string, never>> {
  return definePolicy<Record<string, never>>({
    name,
    description: 'Returns its input unchanged (test fixture).',
    schema: { type: 'object' },
    create: () => ({ specificationVersion: SPECIFICATION_VERSION, name, needs, prefill: async <T>(l: LayerCache<T>) => l, step: async <T>(l: LayerCache<T>) => l }),
  });
}
