// Every input error path of a guarded policy: the typed code and the message naming the field.
import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  KVFold,
  createContext,
  definePlugin,
  hostLayer,
  hostTensor,
  layerFromHost,
  type KVFoldError,
} from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { passThroughPolicy } from '@kvfold/testkit';
import type { HostTensor } from '@kvfold/core';

const k = createReferenceKernels();
const needy = passThroughPolicy('needy', ['attention']);
const kv = KVFold.create({ plugins: [definePlugin({ name: 'fx', policies: [needy] })] });
const policy = kv.policy('needy');

const layerOf = (heads: number, length: number, d: number, keys?: number[]) =>
  layerFromHost(k, hostLayer({ heads, length, headDim: d, keys: keys ?? Array.from({ length: heads * length * d }, (_, i) => i / 10), values: new Array(heads * length * d).fill(0.5) }));
const att = (h: number, n: number) => k.fromHost(hostTensor('float32', [h, n]));
const ctx = (budget: number, promptLength = 4) => createContext({ kernels: k, budget, promptLength });
const failure = async (p: Promise<unknown>): Promise<KVFoldError> => {
  try { await p; } catch (e) { return e as KVFoldError; }
  throw new Error('expected a rejection');
};

describe('guarded policy input checks', () => {
  it('passes a well-formed call through', async () => {
    const l = layerOf(2, 4, 3);
    expect(await policy.prefill(l, { attention: att(2, 4) }, ctx(2))).toBe(l);
  });
  it('refuses an empty cache (KVF_EMPTY_CACHE)', async () => {
    const e = await failure(policy.prefill(layerOf(2, 0, 3, []), { attention: att(2, 0) }, ctx(1)));
    expect(e.code).toBe(ErrorCode.EmptyCache);
    expect(e.message).toBe('needy.prefill: the cache holds no tokens; prefill needs at least one');
  });
  it('refuses NaN and Infinity in keys or values (KVF_NON_FINITE)', async () => {
    const keys = Array.from({ length: 2 * 4 * 3 }, () => 1);
    keys[5] = Number.NaN;
    const e = await failure(policy.prefill(layerOf(2, 4, 3, keys), { attention: att(2, 4) }, ctx(2)));
    expect(e.code).toBe(ErrorCode.NonFinite);
    expect(e.message).toMatch(/^keys contains NaN or Infinity/);
    const l = layerOf(2, 4, 3);
    const bad = { ...l, values: k.fromHost(hostTensor('float32', [2, 4, 3], new Array(24).fill(Number.POSITIVE_INFINITY))) };
    expect((await failure(policy.prefill(bad, { attention: att(2, 4) }, ctx(2)))).details.field).toBe('values');
  });
  it('refuses mismatched shapes, naming the field (KVF_SHAPE)', async () => {
    const l = layerOf(2, 4, 3);
    const e = await failure(policy.prefill({ ...l, values: k.fromHost(hostTensor('float32', [2, 3, 3])) }, { attention: att(2, 4) }, ctx(2)));
    expect(e.code).toBe(ErrorCode.Shape);
    expect(e.message).toBe('needy.prefill: values [2, 3, 3] differ from keys [2, 4, 3]');
    const e2 = await failure(policy.prefill({ ...l, scores: k.fromHost(hostTensor('float32', [2, 5])) }, { attention: att(2, 4) }, ctx(2)));
    expect(e2.message).toBe('needy.prefill: scores must be [2, 4], got [2, 5]');
    const e3 = await failure(policy.prefill(l, { attention: att(1, 4) }, ctx(2)));
    expect(e3.message).toBe('needy.prefill: observed.attention must be [2, 4], got [1, 4]');
  });
  it('refuses the wrong dtype (KVF_DTYPE)', async () => {
    const l = layerOf(2, 4, 3);
    const e = await failure(policy.prefill({ ...l, positions: k.fromHost(hostTensor('float32', [2, 4])) as HostTensor }, { attention: att(2, 4) }, ctx(2)));
    expect(e.code).toBe(ErrorCode.DType);
    expect(e.message).toBe('needy.prefill: positions has dtype float32; expected "int32"');
  });
  it('refuses a budget larger than the cache or not a positive integer (KVF_BUDGET)', async () => {
    const l = layerOf(2, 4, 3);
    const e = await failure(policy.prefill(l, { attention: att(2, 4) }, ctx(5)));
    expect(e.code).toBe(ErrorCode.Budget);
    expect(e.message).toBe('needy.prefill: budget of 5 slots is larger than the cache (4 slots)');
    expect((await failure(policy.prefill(l, { attention: att(2, 4) }, ctx(0)))).code).toBe(ErrorCode.Budget);
    expect((await failure(policy.step(l, { attention: att(2, 4) }, ctx(1.5)))).code).toBe(ErrorCode.Budget);
  });
  it('names the missing observation (KVF_MISSING_OBSERVATION)', async () => {
    const e = await failure(policy.prefill(layerOf(2, 4, 3), {}, ctx(2)));
    expect(e.code).toBe(ErrorCode.MissingObservation);
    expect(e.message).toBe('policy "needy" needs observed.attention, but the runtime passed none; compute it with kernels.observe()');
  });
});
