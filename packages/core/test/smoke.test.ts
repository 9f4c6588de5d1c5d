import { describe, expect, it } from 'vitest';
import { KVFold, definePlugin, definePolicy } from '@kvfold/core';

describe('smoke', () => {
  it('registers a plugin policy per instance', () => {
    const p = definePolicy({ name: 'noop', description: 'x', schema: { type: 'object', properties: { a: { type: 'number', default: 3 } } }, create: () => ({ specificationVersion: 'v1', name: 'noop', needs: [], prefill: async (l) => l, step: async (l) => l }) });
    const a = KVFold.create({ plugins: [definePlugin({ name: 't', policies: [p] })] });
    const b = KVFold.create();
    expect(a.policies.names()).toEqual(['noop']);
    expect(b.policies.names()).toEqual([]);
  });
});
