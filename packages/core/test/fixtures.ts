import { defineBackend, definePlugin, definePolicy, type KVCachePolicy, type KVKernels } from '@kvfold/core';

/** A no-op policy with one bounded option, for config and registry tests. */
export const echoPolicy = definePolicy<{ eps: number; mode: 'a' | 'b' }>({
  name: 'echo',
  description: 'Returns the cache unchanged (test fixture).',
  schema: {
    type: 'object',
    additionalProperties: false,
    properties: {
      eps: { type: 'number', minimum: -1, maximum: 1, default: 0.75 },
      mode: { enum: ['a', 'b'], default: 'a' },
    },
  },
  create: (options): KVCachePolicy & { options: unknown } => ({
    specificationVersion: 'v1',
    name: 'echo',
    needs: ['attention'],
    options,
    prefill: async (l) => l,
    step: async (l) => l,
  }),
});

/** A backend fixture whose kernels only describe themselves. */
export const fakeBackend = defineBackend<{ flavour: string }>({
  name: 'fake',
  description: 'test fixture',
  schema: { type: 'object', additionalProperties: false, properties: { flavour: { enum: ['x', 'y'], default: 'x' } } },
  create: async (options) => ({ backend: 'fake', describe: () => `fake ${options.flavour}` }) as unknown as KVKernels<unknown>,
});

export const fixturePlugin = definePlugin({ name: 'fixture', policies: [echoPolicy], backends: [fakeBackend] });
