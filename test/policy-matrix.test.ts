// The shared policy matrix: every registered policy, built-in or plugin, through the same invariants.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { KVFold } from '@kvfold/core';
import baselines from '@kvfold/policy-baselines';
import h2o from '@kvfold/policy-h2o';
import cam from '@kvfold/policy-cam';
import kvmerger from '@kvfold/policy-kvmerger';
import { checkPolicy, type PolicyExpectations } from '@kvfold/testkit';

const kv = KVFold.create({ plugins: [baselines, h2o, cam, kvmerger] });
// The third-party plugin comes in the way a user's would: resolved as an npm package from a project
// that installed it (examples/compose), imported from its built entry point, checked, registered.
// Vitest runs this file as ESM, so top-level await is fine; a missing build fails here by name.
const userProject = fileURLToPath(new URL('../examples/compose', import.meta.url));
await kv.loadPlugins(['kvfold-policy-tova'], { from: userProject });

/** What each policy promises; a policy missing here fails the matrix, so new ones must declare theirs. */
const expectations: Record<string, PolicyExpectations> = {
  full: { prefillLength: 'unchanged', decodeSlack: Infinity, conservesCounts: true },
  window: { prefillLength: 'budget', keepsRecent: 1 },
  random: { prefillLength: 'budget', keepsRecent: 1 },
  h2o: { prefillLength: 'budget', keepsRecent: 1 },
  cam: { prefillLength: 'budget', keepsRecent: 1 },
  kvmerger: { prefillLength: 'budget', decodeSlack: Infinity, keepsRecent: 1 },
  tova: { prefillLength: 'budget', keepsRecent: 1 },
};

describe('shared policy matrix', () => {
  it('declares expectations for every registered policy', () => {
    expect(Object.keys(expectations).sort()).toEqual(kv.policies.names());
  });
  it('registered the plugin package under its own name, next to the built-in ones', () => {
    expect(kv.plugins()).toContain('kvfold-policy-tova');
    expect(kv.policies.list().find((e) => e.definition.name === 'tova')?.owner).toBe('kvfold-policy-tova');
  });
  for (const name of kv.policies.names()) {
    it(`${name} holds every invariant`, async () => {
      const violations = await checkPolicy(() => kv.policy(name), expectations[name]!);
      expect(violations).toEqual([]);
    });
  }
  it('kvmerger in exact mode conserves counts when nothing is trimmed', async () => {
    const violations = await checkPolicy(() => kv.policy('kvmerger', { recent: 2, heavy: 2 }), { prefillLength: 'budget', decodeSlack: Infinity, conservesCounts: true, keepsRecent: 2 }, [
      { heads: 2, queryHeads: 4, length: 40, headDim: 8, ratio: 0.5, seed: 9 },
    ]);
    expect(violations).toEqual([]);
  });
  it('tova deciding per head holds every invariant too', async () => {
    expect(await checkPolicy(() => kv.policy('tova', { scope: 'head' }), expectations.tova!)).toEqual([]);
  });
});
