// Issue 10, item 8: the guard checks every tensor a policy receives (dtype, shape, finiteness and
// magnitude, positions strictly increasing per head, counts >= 1 whose sum fits int32).
import { describe, expect, it } from 'vitest';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { passThroughPolicy } from '@kvfold/testkit';
import { ErrorCode, KVFold, createContext, definePlugin, hostLayer, hostTensor, layerFromHost, type HostLayer } from '@kvfold/core';
import { caught } from './helpers.js';

const k = createReferenceKernels();
const echo = passThroughPolicy('echo', ['attention']);
const policy = KVFold.create({ plugins: [definePlugin({ name: 'sec', policies: [echo] })] }).policy('echo');
const H = 2;
const L = 4;
const D = 3;
const host = (over: Partial<Record<'positions' | 'counts' | 'scores', number[]>> = {}): HostLayer =>
  hostLayer({ heads: H, length: L, headDim: D, keys: Array.from({ length: H * L * D }, (_, i) => i / 7), values: Array.from({ length: H * L * D }, (_, i) => 1 - i / 9), ...over });
const att = (data?: number[]) => k.fromHost(hostTensor('float32', [H, L], data ?? [0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3, 0.4]));
const ctx = createContext({ kernels: k, budget: 2, promptLength: L });

async function refuse(layer: HostLayer, observed: Record<string, unknown>, code: string, field: RegExp): Promise<void> {
  const e = await caught(() => policy.prefill(layerFromHost(k, layer), observed, ctx));
  expect(e.code).toBe(code);
  expect(e.message).toMatch(field);
}

describe('item 8: the guard checks every tensor a policy receives', () => {
  it('NaN or an infinity in observed.attention, lastAttention or scores', async () => {
    await refuse(host(), { attention: att([0, Number.NaN, 0, 0, 0, 0, 0, 0]) }, ErrorCode.NonFinite, /^observed\.attention contains NaN or Infinity/);
    await refuse(host(), { attention: att(), lastAttention: att([0, 0, 0, Number.POSITIVE_INFINITY, 0, 0, 0, 0]) }, ErrorCode.NonFinite, /^observed\.lastAttention/);
    await refuse(host({ scores: [0, 0, 0, 0, 0, Number.NEGATIVE_INFINITY, 0, 0] }), { attention: att() }, ErrorCode.NonFinite, /^scores contains NaN or Infinity/);
  });
  it('values of magnitude 2^64 or more anywhere (KVF_VALUE_RANGE)', async () => {
    await refuse(host({ scores: [0, 0, 2 ** 64, 0, 0, 0, 0, 0] }), { attention: att() }, ErrorCode.ValueRange, /^scores holds a value of magnitude >= 18446744073709552000 \(2\^64\)/);
    await refuse(host(), { attention: att([0, 0, 0, 0, 0, 0, 0, -3e38]) }, ErrorCode.ValueRange, /^observed\.attention/);
  });
  it('the wrong dtype or shape of an observation', async () => {
    await refuse(host(), { attention: k.fromHost(hostTensor('int32', [H, L])) }, ErrorCode.DType, /observed\.attention has dtype int32/);
    await refuse(host(), { attention: att(), lastAttention: k.fromHost(hostTensor('float32', [H, L + 1])) }, ErrorCode.Shape, /observed\.lastAttention must be \[2, 4\]/);
    await refuse(host(), { attention: att(), queries: k.fromHost(hostTensor('float32', [3, 1, D])) }, ErrorCode.Shape, /observed\.queries must be \[queryHeads, n, 3\]/);
  });
  it('positions that do not strictly increase along a head', async () => {
    await refuse(host({ positions: [0, 1, 2, 3, 0, 2, 2, 3] }), { attention: att() }, ErrorCode.Shape, /positions\[1, 2\] = 2 must be greater than positions\[1, 1\] = 2/);
    await refuse(host({ positions: [0, 5, 2, 3, 0, 1, 2, 3] }), { attention: att() }, ErrorCode.Shape, /positions\[0, 2\] = 2 must be greater/);
  });
  it('counts below 1, and counts whose sum would overflow int32 when merged', async () => {
    await refuse(host({ counts: [1, 1, 0, 1, 1, 1, 1, 1] }), { attention: att() }, ErrorCode.Shape, /counts\[0, 2\] = 0 must be >= 1/);
    await refuse(host({ counts: [1, 1, 1, 1, 2 ** 30, 2 ** 30, 1, 1] }), { attention: att() }, ErrorCode.Shape, /the counts of head 1 sum to 2147483650, above int32's 2147483647/);
  });
  it('a well-formed call still passes', async () => {
    const l = layerFromHost(k, host());
    expect(await policy.prefill(l, { attention: att() }, ctx)).toBe(l);
  });
});
