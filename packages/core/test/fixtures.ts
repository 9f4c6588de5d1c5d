import { SPECIFICATION_VERSION, defineBackend, defineKernelBackend, definePlugin, definePolicy, type KVCachePolicy } from '@kvfold/core';

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
    specificationVersion: SPECIFICATION_VERSION,
    name: 'echo',
    needs: ['attention'],
    options,
    prefill: async (l) => l,
    step: async (l) => l,
  }),
});

/** A backend fixture that implements no kernel: every kernel would run the reference through the host. */
export const fakeBackend = defineBackend<{ flavour: string }>({
  name: 'fake',
  description: 'test fixture',
  schema: { type: 'object', additionalProperties: false, properties: { flavour: { enum: ['x', 'y'], default: 'x' } } },
  create: async (options) =>
    defineKernelBackend<unknown>({
      name: 'fake',
      describe: () => `fake ${options.flavour}`,
      inspect: () => 'is not a fake tensor',
      fromHost: (t) => t,
      toHost: async () => {
        throw new Error('fake backend holds no tensors');
      },
      read: () => {
        throw new Error('fake backend holds no tensors');
      },
      dispose: () => undefined,
    }),
});

export const fixturePlugin = definePlugin({ name: 'fixture', policies: [echoPolicy], backends: [fakeBackend] });
