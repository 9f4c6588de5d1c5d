// The shared policy matrix: every registered policy, built-in or plugin, through the same invariants on
// every backend that can run here, and with the same results as on the reference backend.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BackendUnavailableError, KVFold, createContext, layerFromHost, rows, type KVKernels } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import tfjs from '@kvfold/backend-tfjs';
import onnx, { defaultNativeDir } from '@kvfold/backend-onnx';
import baselines from '@kvfold/policy-baselines';
import h2o from '@kvfold/policy-h2o';
import cam from '@kvfold/policy-cam';
import kvmerger from '@kvfold/policy-kvmerger';
import snapkv from '@kvfold/policy-snapkv';
import knorm from '@kvfold/policy-knorm';
import { checkPolicy, mulberry32, randomLayer, type PolicyExpectations } from '@kvfold/testkit';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const kv = KVFold.create({ plugins: [reference, tfjs, onnx, baselines, h2o, cam, kvmerger, snapkv, knorm] });
// The third-party plugin comes in the way a user's would: resolved as an npm package from a project
// that installed it (examples/compose), imported from its built entry point, checked, registered.
// Vitest runs this file as ESM, so top-level await is fine; a missing build fails here by name.
const userProject = fileURLToPath(new URL('../examples/compose', import.meta.url));
await kv.loadPlugins(['kvfold-policy-tova'], { from: userProject });

/** What a policy promises, and the options it runs the matrix with (a policy missing here fails the matrix). */
interface Entry {
  readonly expect: PolicyExpectations;
  readonly options?: Record<string, unknown>;
  /** Why results are not compared with the reference backend's, when they are not. */
  readonly noParity?: string;
}
// The matrix's synthetic keys all have the same norm (testkit's keyScale), so Knorm's ranking there is
// decided by float32 rounding, which backends are allowed to differ in; packages/policy-knorm checks its
// parity on keys of distinct norms.
const equalNorms = 'synthetic keys of equal norm: the ranking is rounding';
const evicts = { prefillLength: 'budget', keepsRecent: 1 } as const;
const prefillOnly = { prefillLength: 'budget', decodeSlack: Infinity, keepsRecent: 1 } as const;
const matrix: Record<string, Entry> = {
  full: { expect: { prefillLength: 'unchanged', decodeSlack: Infinity, conservesCounts: true } },
  window: { expect: evicts },
  random: { expect: evicts },
  h2o: { expect: evicts },
  cam: { expect: evicts },
  kvmerger: { expect: prefillOnly },
  tova: { expect: evicts },
  // Knorm protects nothing (as kvpress's KnormPress): even the newest prompt token may go.
  knorm: { expect: { prefillLength: 'budget', decodeSlack: Infinity }, noParity: equalNorms },
  // The matrix observes the last 8 prompt tokens: a window within them.
  snapkv: { expect: prefillOnly, options: { window: 4 } },
  pyramidkv: { expect: { ...prefillOnly, prefillLength: 'at-most-budget' }, options: { window: 2, beta: 2 } },
  chain: {
    expect: { prefillLength: 'at-most-budget', decodeSlack: Infinity },
    options: { policies: [{ name: 'kvmerger', options: { mode: 'paper' } }, { name: 'knorm' }] },
    noParity: equalNorms,
  },
};

/** Every backend that runs here, with the onnx native kernels too when they are built. */
async function backends(): Promise<[string, KVKernels<unknown>][]> {
  const out: [string, KVKernels<unknown>][] = [];
  const variants: [string, string, Record<string, unknown>][] = [
    ['reference', 'reference', {}],
    ['tfjs (wasm)', 'tfjs', { engine: 'wasm' }],
    ['onnx (function bodies)', 'onnx', { native: 'off', threads: 1 }],
  ];
  if (existsSync(join(defaultNativeDir(), 'manifest.json'))) variants.push(['onnx (native CPU kernels)', 'onnx', { native: 'require', threads: 1, observeKernel: 'native' }]);
  for (const [label, name, options] of variants) {
    try {
      out.push([label, await kv.backend(name, options)]);
    } catch (e) {
      if (!(e instanceof BackendUnavailableError)) throw e;
    }
  }
  return out;
}
const available = await backends();

describe('shared policy matrix', () => {
  it('declares expectations for every registered policy, and runs on the reference, tfjs and onnx backends', () => {
    expect(Object.keys(matrix).sort()).toEqual(kv.policies.names());
    expect(available.map(([label]) => label).slice(0, 3)).toEqual(['reference', 'tfjs (wasm)', 'onnx (function bodies)']);
  });
  it('registered the plugin package under its own name, next to the built-in ones', () => {
    expect(kv.plugins()).toContain('kvfold-policy-tova');
    expect(kv.policies.list().find((e) => e.definition.name === 'tova')?.owner).toBe('kvfold-policy-tova');
  });
  for (const [label, kernels] of available) {
    describe(`on ${label}`, () => {
      for (const name of kv.policies.names()) {
        it(`${name} holds every invariant${label === 'reference' || matrix[name]?.noParity ? '' : ' and matches the reference backend'}`, async () => {
          const entry = matrix[name]!;
          expect(await checkPolicy(() => kv.policy(name, entry.options ?? {}), entry.expect, undefined, { kernels, parity: !entry.noParity })).toEqual([]);
        });
      }
    });
  }
  it('knorm keeps the same slots on every backend when key norms differ', async () => {
    const host = randomLayer(3, 40, 16, mulberry32(21));
    const picks: number[][][] = [];
    for (const [, kernels] of available) {
      const out = await kv.policy('knorm').prefill(layerFromHost(kernels, host), {}, createContext({ kernels, budget: 12, promptLength: 40 }));
      picks.push(rows(await kernels.toHost(out.positions)));
    }
    for (const p of picks.slice(1)) expect(p).toEqual(picks[0]);
  });
  it('kvmerger in exact mode conserves counts when nothing is trimmed', async () => {
    const violations = await checkPolicy(() => kv.policy('kvmerger', { recent: 2, heavy: 2 }), { prefillLength: 'budget', decodeSlack: Infinity, conservesCounts: true, keepsRecent: 2 }, [
      { heads: 2, queryHeads: 4, length: 40, headDim: 8, ratio: 0.5, seed: 9 },
    ]);
    expect(violations).toEqual([]);
  });
  it('tova deciding per head, and every evicting policy in prefill-only mode, hold every invariant too', async () => {
    expect(await checkPolicy(() => kv.policy('tova', { scope: 'head' }), matrix.tova!.expect)).toEqual([]);
    for (const name of ['window', 'random', 'h2o', 'cam', 'tova']) {
      expect(await checkPolicy(() => kv.policy(name, { decode: 'keep' }), prefillOnly), name).toEqual([]);
      expect(await checkPolicy(() => kv.policy(name, { decode: { every: 3 } }), { ...evicts, decodeSlack: 2 }), name).toEqual([]);
    }
  });
});
