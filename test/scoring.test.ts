// Core's scoring layer: the one shared selection, the ScorerPolicy base (under budget, decode modes),
// and the wrappers (per-layer budgets and PyramidKV's schedule, chains), on hand-computed cases.
import { describe, expect, it } from 'vitest';
import {
  ChainPolicy,
  ErrorCode,
  KVFold,
  PerLayerBudgetPolicy,
  SPECIFICATION_VERSION,
  ScorerPolicy,
  createContext,
  decodeSchema,
  evictsAtStep,
  hostTensor,
  keepSlots,
  pyramidSchedule,
  selectSlots,
  type KVCachePolicy,
  type KVKernels,
  type LayerCache,
  type Observation,
  type PolicyContext,
  type Protection,
} from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import baselines from '@kvfold/policy-baselines';
import h2o from '@kvfold/policy-h2o';
import { attention, leaked, makeHostLayer, positionsOf, trackedKernels, upload } from '@kvfold/testkit';

const k = createReferenceKernels();
const scoresOf = (perHead: number[][]) => k.fromHost(hostTensor('float32', [perHead.length, perHead[0]!.length], perHead.flat()));
const rowsOf = (keep: Int32Array, heads: number) => Array.from({ length: heads }, (_, h) => Array.from(keep.subarray((h * keep.length) / heads, ((h + 1) * keep.length) / heads)));
const ctxFor = <T>(kernels: KVKernels<T>, budget: number, promptLength: number, step = 0, extra: Partial<Parameters<typeof createContext<T>>[0]> = {}) =>
  createContext({ kernels, budget, promptLength, step, ...extra });

describe('selectSlots: protect sink and recent, keep the top scores (topK kernel)', () => {
  it('keeps sinks, then the top scores between them, then the recent window, ascending per head', async () => {
    const scores = scoresOf([
      [9, 1, 5, 7, 2, 8, 0, 3],
      [0, 6, 6, 1, 9, 2, 4, 5],
    ]);
    // budget 5 = sink 1 + top 2 among slots 1..5 + recent 2 (slots 6, 7)
    expect(rowsOf(await selectSlots(k, scores, 2, 8, { budget: 5, sink: 1, recent: 2 }), 2)).toEqual([
      [0, 3, 5, 6, 7],
      [0, 1, 4, 6, 7], // 6 and 6 tie: the lower slot (1) wins
    ]);
  });
  it('ranks NaN lowest, broadcasts a [1, length] ranking to every head, and needs no scores when protection fills the budget', async () => {
    expect(rowsOf(await selectSlots(k, scoresOf([[NaN, 1, 0, NaN]]), 1, 4, { budget: 2 }), 1)).toEqual([[1, 2]]);
    // one ranking for three heads: the top 2 of slots 0..2 (5 at 1, 1 at 2), then the recent slot 3
    expect(rowsOf(await selectSlots(k, scoresOf([[0, 5, 1, 4]]), 3, 4, { budget: 3, recent: 1 }), 3)).toEqual([
      [1, 2, 3],
      [1, 2, 3],
      [1, 2, 3],
    ]);
    expect(rowsOf(await selectSlots(k, undefined, 1, 6, { budget: 3, sink: 1, recent: 5 }), 1)).toEqual([[0, 4, 5]]);
  });
  it('refuses a cache that already fits, and a budget left to scores without scores', async () => {
    await expect(selectSlots(k, undefined, 1, 3, { budget: 3 })).rejects.toMatchObject({ code: ErrorCode.Shape });
    await expect(selectSlots(k, undefined, 1, 6, { budget: 3, recent: 1 })).rejects.toThrow(/no scores were given/);
  });
  it('writes into a given array (the result a view of it, whatever it held before) and refuses one too short, naming into', async () => {
    const scores = scoresOf([
      [9, 1, 5, 7, 2, 8, 0, 3],
      [0, 6, 6, 1, 9, 2, 4, 5],
    ]);
    const into = new Int32Array(12).fill(-7);
    const keep = await selectSlots(k, scores, 2, 8, { budget: 5, sink: 1, recent: 2, into });
    expect(keep.buffer).toBe(into.buffer);
    expect(rowsOf(keep, 2)).toEqual([
      [0, 3, 5, 6, 7],
      [0, 1, 4, 6, 7],
    ]);
    expect(Array.from(into.subarray(10))).toEqual([-7, -7]);
    await expect(selectSlots(k, scores, 2, 8, { budget: 5, into: new Int32Array(9) })).rejects.toMatchObject({ code: ErrorCode.Shape, details: { field: 'into', needed: 10 } });
  });
  it('keepSlots gathers, uploading and releasing its index', async () => {
    const t = trackedKernels();
    const layer = upload(t, makeHostLayer(2, 5, 3));
    const out = keepSlots(t, layer, Int32Array.from([0, 2, 4, 1, 3, 4]));
    expect(await positionsOf(t, out)).toEqual([
      [0, 2, 4],
      [1, 3, 4],
    ]);
    expect(leaked(t, [layer, out])).toBe(0);
  });
});

/** A scorer whose score is the slot's key's first element, protecting `recent` slots, with an optional score state. */
class FirstKey extends ScorerPolicy {
  scored = 0;
  constructor(
    options: Record<string, unknown>,
    private readonly recent = 0,
    private readonly state = false,
  ) {
    super({ name: 'first-key', needs: [], schema: { type: 'object', properties: { decode: decodeSchema('evict') }, additionalProperties: false } }, options);
  }
  protected override protect(): Protection {
    return { recent: this.recent };
  }
  protected override update<T>(layer: LayerCache<T>, _o: Observation<T>, ctx: PolicyContext<T>): LayerCache<T> {
    return this.state ? { ...layer, scores: ctx.kernels.accumulate(layer.scores, layer.scores) } : layer;
  }
  protected async score<T>(layer: LayerCache<T>, _o: Observation<T>, ctx: PolicyContext<T>): Promise<T> {
    this.scored++;
    const keys = await ctx.kernels.toHost(layer.keys);
    const [H, L, D] = keys.shape as [number, number, number];
    return ctx.kernels.fromHost(hostTensor('float32', [H, L], Array.from({ length: H * L }, (_, i) => keys.data[i * D]!)));
  }
}

describe('ScorerPolicy', () => {
  const keysOf = (firsts: number[]) => makeHostLayer(1, firsts.length, 1, 1);
  it('over budget keeps the protected slots and the top scores, disposing its own temporaries', async () => {
    const t = trackedKernels();
    const host = keysOf([0, 0, 0, 0, 0, 0]);
    host.keys.data.set([5, 1, 4, 9, 2, 0]);
    const layer = upload(t, host);
    const out = await new FirstKey({}, 1).prefill(layer, {}, ctxFor(t, 3, 6));
    expect(await positionsOf(t, out)).toEqual([[0, 3, 5]]); // top 2 of slots 0..4 (5, 9), recent slot 5
    expect(leaked(t, [layer, out])).toBe(0);
  });
  it('under budget returns the same layer when it keeps no score state, and the layer with updated scores when it does', async () => {
    const t = trackedKernels();
    const layer = upload(t, makeHostLayer(1, 4, 2, 1, [1, 2, 3, 4]));
    const stateless = new FirstKey({});
    expect(await stateless.prefill(layer, {}, ctxFor(t, 4, 4))).toBe(layer);
    expect(stateless.scored).toBe(0);
    const stateful = await new FirstKey({}, 0, true).prefill(layer, {}, ctxFor(t, 4, 4));
    expect(stateful.keys).toBe(layer.keys);
    expect(Array.from((await t.toHost(stateful.scores)).data)).toEqual([2, 4, 6, 8]);
    expect(leaked(t, [layer, stateful])).toBe(0);
  });
  it('decode modes: evict at every step over budget, keep (prefill only), or every n slots; a step never drops the newest slot', async () => {
    expect([1, 2, 3].map((extra) => evictsAtStep('evict', 4 + extra, 4))).toEqual([true, true, true]);
    expect([1, 2, 3].map((extra) => evictsAtStep('keep', 4 + extra, 4))).toEqual([false, false, false]);
    expect([1, 2, 3].map((extra) => evictsAtStep({ every: 2 }, 4 + extra, 4))).toEqual([false, true, true]);
    const host = keysOf([0, 0, 0, 0, 0]);
    host.keys.data.set([5, 1, 4, 9, -7]); // the newest slot has the lowest score
    const layer = upload(k, host);
    expect(await positionsOf(k, await new FirstKey({}).step(layer, {}, ctxFor(k, 3, 3, 1)))).toEqual([[0, 3, 4]]);
    expect(await new FirstKey({ decode: 'keep' }).step(layer, {}, ctxFor(k, 3, 3, 1))).toBe(layer);
    expect(await new FirstKey({ decode: { every: 3 } }).step(layer, {}, ctxFor(k, 3, 3, 1))).toBe(layer);
    expect(await positionsOf(k, await new FirstKey({ decode: { every: 2 } }).step(layer, {}, ctxFor(k, 3, 3, 1)))).toEqual([[0, 3, 4]]);
  });
  it('the shared decode option is validated once, by KVFold.policy, naming the field', () => {
    const kv = KVFold.create({ plugins: [baselines, h2o] });
    expect(() => kv.policy('h2o', { decode: { every: 0 } })).toThrow(/\/decode/);
    expect(() => kv.policy('window', { decode: 'sometimes' })).toThrow(expect.objectContaining({ code: ErrorCode.Config }));
    expect((kv.policy('h2o', { decode: 'keep' }) as unknown as { name: string }).name).toBe('h2o');
  });
});

describe('PerLayerBudgetPolicy and PyramidKV\'s schedule', () => {
  it('falls linearly from the bottom layer to the top one, averaging to the budget (hand-computed)', () => {
    // budget 100, window 8, beta 4, 400 prompt tokens: min 25, max 175, steps of 37.5 over 5 layers
    const s = pyramidSchedule(4, 8);
    expect([0, 1, 2, 3, 4].map((l) => s(100, l, 5, 400))).toEqual([175, 137.5, 100, 62.5, 25]);
    // max capped at prompt - window = 392, which raises min to 2 * 300 - 392 = 208
    expect([0, 1, 2].map((l) => s(300, l, 3, 400))).toEqual([392, 300, 208]);
    // min = 100 / 20 = 5 < window 8: no pyramid, the uniform budget; likewise with one layer
    expect(pyramidSchedule(20, 8)(100, 0, 5, 400)).toBe(100);
    expect(s(100, 0, 1, 400)).toBe(100);
  });
  it('runs the inner policy with each layer\'s rounded, clamped budget', async () => {
    const seen: number[] = [];
    const inner: KVCachePolicy = {
      specificationVersion: SPECIFICATION_VERSION,
      name: 'spy',
      needs: ['attention'],
      prefill: async (l, _o, ctx) => (seen.push(ctx.budget), l),
      step: async (l, _o, ctx) => (seen.push(ctx.budget), l),
    };
    const p = new PerLayerBudgetPolicy('pyramid-spy', inner, pyramidSchedule(4, 8));
    expect(p.needs).toEqual(['attention']);
    const layer = upload(k, makeHostLayer(1, 4, 1));
    for (let l = 0; l < 5; l++) await p.prefill(layer, {}, ctxFor(k, 100, 400, 0, { layerIndex: l, layerCount: 5 }));
    await p.step(layer, {}, ctxFor(k, 100, 400, 1, { layerIndex: 4, layerCount: 5 }));
    expect(seen).toEqual([175, 138, 100, 63, 25, 25]);
  });
});

describe('ChainPolicy', () => {
  const kv = KVFold.create({ plugins: [baselines, h2o] });
  it('refuses an empty chain and a later policy that needs an observation, naming it', () => {
    expect(() => new ChainPolicy('c', [])).toThrow(expect.objectContaining({ code: ErrorCode.Config }));
    expect(() => kv.policy('chain', { policies: [{ name: 'window' }, { name: 'h2o' }] })).toThrow(/\/policies\/1: policy "h2o" needs attention/);
    expect(() => kv.policy('chain', { policies: [{ name: 'window', options: { sink: -1 } }] })).toThrow(/options of policy "window"/);
  });
  it('gives the observation to the first policy, the result to the next, and releases what it dropped in between', async () => {
    const t = trackedKernels();
    const layer = upload(t, makeHostLayer(2, 10, 2));
    const att = attention(t, [
      [9, 0, 8, 0, 7, 0, 6, 0, 0, 1],
      [0, 9, 0, 8, 0, 7, 0, 6, 0, 1],
    ]);
    const chain = kv.policy('chain', { policies: [{ name: 'h2o', options: { recent: 2 } }, { name: 'window', options: { sink: 1 } }] });
    // h2o keeps the top 3 of slots 0..7 plus 8, 9 at budget 5: already at budget, so window keeps it as is
    const out = await chain.prefill(layer, { attention: att }, ctxFor(t, 5, 10));
    expect(await positionsOf(t, out)).toEqual([
      [0, 2, 4, 8, 9],
      [1, 3, 5, 8, 9],
    ]);
    expect(leaked(t, [layer, out, att])).toBe(0);
  });
});
