import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, KVFold, createContext, disposeLayer, hostTensor, layerToHost, rows, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';
import plugin, { H2OPolicy, h2oPolicy } from '@kvfold/policy-h2o';
import { attention, leaked, makeHostLayer, positionsOf, snapshot, trackedKernels, upload } from '@kvfold/testkit';

const ctxFor = (k: KVKernels<HostTensor>, budget: number, promptLength: number, step = 0) => createContext({ kernels: k, budget, promptLength, step });

/** Append one token at `position` to every head, with keys/values filled with `fill`. */
function appendToken(k: KVKernels<HostTensor>, layer: LayerCache<HostTensor>, heads: number, dim: number, position: number, fill: number): LayerCache<HostTensor> {
  const kv = hostTensor('float32', [heads, 1, dim], new Array(heads * dim).fill(fill));
  const keys = k.fromHost(kv);
  const values = k.fromHost(kv);
  const pos = k.fromHost(hostTensor('int32', [heads, 1], new Array(heads).fill(position)));
  const next = k.append(layer, keys, values, pos);
  k.dispose(keys, values, pos);
  return next;
}

describe('h2o: hand-computed cases', () => {
  it('keeps the recent window plus the top accumulated-attention slots per head', async () => {
    const k = trackedKernels();
    const input = makeHostLayer(2, 6, 2);
    const layer = upload(k, input);
    // head 0: older slots 0..3 score 0.5, 0.1, 0.3, 0.05 -> heavy {0, 2}; head 1: 0.1, 0.6, 0.1, 0.7 -> {1, 3}.
    const att = attention(k, [
      [0.5, 0.1, 0.3, 0.05, 0.2, 0.4],
      [0.1, 0.6, 0.1, 0.7, 0.9, 0.0],
    ]);
    const out = await new H2OPolicy({ recent: 2 }).prefill(layer, { attention: att }, ctxFor(k, 4, 6));
    const host = await layerToHost(k, out);
    expect(rows(host.positions)).toEqual([
      [0, 2, 4, 5],
      [1, 3, 4, 5],
    ]);
    const s = rows(host.scores);
    [0.5, 0.3, 0.2, 0.4].forEach((v, j) => expect(s[0][j]).toBeCloseTo(v, 6));
    [0.6, 0.7, 0.9, 0.0].forEach((v, j) => expect(s[1][j]).toBeCloseTo(v, 6));
    // keys and values are the input's rows at the kept slots; counts stay 1
    const kept = [[0, 2, 4, 5], [1, 3, 4, 5]];
    for (let h = 0; h < 2; h++) {
      kept[h].forEach((slot, j) => {
        for (let d = 0; d < 2; d++) {
          expect(host.keys.data[(h * 4 + j) * 2 + d]).toBe(input.keys.data[(h * 6 + slot) * 2 + d]);
          expect(host.values.data[(h * 4 + j) * 2 + d]).toBe(input.values.data[(h * 6 + slot) * 2 + d]);
        }
      });
    }
    expect(Array.from(host.counts.data)).toEqual(new Array(8).fill(1));
    expect(leaked(k, [layer, att, out])).toBe(0);
  });

  it('adds the observed attention to the scores already held', async () => {
    const k = trackedKernels();
    const layer = upload(k, makeHostLayer(1, 6, 2, 1, [0, 0, 0, 0.3, 0, 0]));
    const att = attention(k, [[0.5, 0.1, 0.3, 0.05, 0.2, 0.4]]);
    const out = await new H2OPolicy({ recent: 2 }).prefill(layer, { attention: att }, ctxFor(k, 4, 6));
    // slot 3 now scores 0.35 > slot 2's 0.3
    expect(await positionsOf(k, out)).toEqual([[0, 3, 4, 5]]);
  });

  it('breaks ties toward the lower slot', async () => {
    const k = trackedKernels();
    const layer = upload(k, makeHostLayer(1, 6, 1));
    const att = attention(k, [[0.2, 0.2, 0.2, 0.2, 0, 0]]);
    const out = await new H2OPolicy({ recent: 2 }).prefill(layer, { attention: att }, ctxFor(k, 4, 6));
    expect(await positionsOf(k, out)).toEqual([[0, 1, 4, 5]]);
  });

  it('normalize ranks by the mean over the queries that could see each slot', async () => {
    const k = trackedKernels();
    const layer = upload(k, makeHostLayer(1, 6, 1));
    // divisors 6,5,4,3 for slots 0..3: 0.6/6=0.1, 0.1/5=0.02, 0.3/4=0.075, 0.28/3=0.0933
    const att = attention(k, [[0.6, 0.1, 0.3, 0.28, 0.1, 0.1]]);
    const raw = await new H2OPolicy({ recent: 2 }).prefill(layer, { attention: att }, ctxFor(k, 4, 6));
    const norm = await new H2OPolicy({ recent: 2, normalize: true }).prefill(layer, { attention: att }, ctxFor(k, 4, 6));
    expect(await positionsOf(k, raw)).toEqual([[0, 2, 4, 5]]);
    expect(await positionsOf(k, norm)).toEqual([[0, 3, 4, 5]]);
    // the stored state stays the raw sum
    const s = rows(await k.toHost(norm.scores))[0];
    [0.6, 0.28, 0.1, 0.1].forEach((v, j) => expect(s[j]).toBeCloseTo(v, 6));
    expect(leaked(k, [layer, att, raw, norm])).toBe(0);
  });

  it('a decode step over budget evicts back to it, scores travelling with the slots', async () => {
    const k = trackedKernels();
    const policy = new H2OPolicy({ recent: 2 });
    const layer = upload(k, makeHostLayer(1, 6, 2));
    const att0 = attention(k, [[0.5, 0.1, 0.3, 0.05, 0.2, 0.4]]);
    const pre = await policy.prefill(layer, { attention: att0 }, ctxFor(k, 4, 6));
    expect(await positionsOf(k, pre)).toEqual([[0, 2, 4, 5]]); // scores 0.5, 0.3, 0.2, 0.4
    const grown = appendToken(k, pre, 1, 2, 6, 9);
    const att1 = attention(k, [[0.1, 0.05, 0.3, 0.2, 0.35]]); // -> 0.6, 0.35, 0.5, 0.6, 0.35
    const out = await policy.step(grown, { attention: att1 }, ctxFor(k, 4, 6, 1));
    const host = await layerToHost(k, out);
    expect(rows(host.positions)).toEqual([[0, 4, 5, 6]]);
    [0.6, 0.5, 0.6, 0.35].forEach((v, j) => expect(host.scores.data[j]).toBeCloseTo(v, 6));
    expect(Array.from(host.values.data.subarray(6, 8))).toEqual([9, 9]);
    expect(leaked(k, [layer, att0, pre, grown, att1, out])).toBe(0);
  });

  it('under budget it returns the same tensors with updated scores', async () => {
    const k = trackedKernels();
    const layer = upload(k, makeHostLayer(2, 3, 2));
    const att = attention(k, [[0.2, 0.3, 0.5], [1, 0, 0]]);
    const out = await new H2OPolicy().step(layer, { attention: att }, ctxFor(k, 4, 3, 1));
    expect(out.keys).toBe(layer.keys);
    expect(out.values).toBe(layer.values);
    expect(out.positions).toBe(layer.positions);
    expect(out.scores).not.toBe(layer.scores);
    expect(Array.from((await k.toHost(out.scores)).data)).toEqual(Array.from(Float32Array.from([0.2, 0.3, 0.5, 1, 0, 0])));
    expect(Array.from((await k.toHost(layer.scores)).data)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('recent = budget keeps only the newest slots; recent = 0 keeps only heavy hitters', async () => {
    const k = trackedKernels();
    const layer = upload(k, makeHostLayer(1, 6, 1));
    const att = attention(k, [[0.9, 0.1, 0.8, 0.2, 0.0, 0.7]]);
    const allRecent = await new H2OPolicy({ recent: 3 }).prefill(layer, { attention: att }, ctxFor(k, 3, 6));
    const noRecent = await new H2OPolicy({ recent: 0 }).prefill(layer, { attention: att }, ctxFor(k, 3, 6));
    expect(await positionsOf(k, allRecent)).toEqual([[3, 4, 5]]);
    expect(await positionsOf(k, noRecent)).toEqual([[0, 2, 5]]);
  });
});

describe('h2o: errors and registration', () => {
  it('refuses a call without attention with a typed error', async () => {
    const k = trackedKernels();
    const layer = upload(k, makeHostLayer(1, 4, 1));
    await expect(new H2OPolicy().prefill(layer, {}, ctxFor(k, 2, 4))).rejects.toMatchObject({ code: ErrorCode.MissingObservation });
  });

  it('validates options with the schema, naming the field', () => {
    expect(() => new H2OPolicy({ recent: -1 })).toThrow(expect.objectContaining({ code: ErrorCode.Config }));
    expect(() => new H2OPolicy({ recent: 2.5 })).toThrow(/recent/);
    expect(() => new H2OPolicy({ heavy: 3 } as never)).toThrow(/heavy/);
    expect(new H2OPolicy().options).toEqual({ recent: 0.5, normalize: false, decode: 'evict' });
  });

  it('registers through the plugin with schema defaults', () => {
    const kv = KVFold.create({ plugins: [plugin] });
    expect(kv.policies.names()).toEqual(['h2o']);
    const p = h2oPolicy.create({ recent: 4, normalize: true, decode: 'evict' });
    expect(p.name).toBe('h2o');
    expect(p.needs).toEqual(['attention']);
    expect(h2oPolicy.schema.additionalProperties).toBe(false);
  });
});

/** Independent oracle: H2O keep set over host arrays in float32 arithmetic. */
function oracleKeep(init: number[][], att: number[][], budget: number, recent: number, normalize: boolean): number[][] {
  return init.map((row, h) => {
    const L = row.length;
    const s = row.map((v, j) => Math.fround(v + att[h][j]));
    const rank = s.map((v, j) => (normalize ? Math.fround(v / (L - j)) : v));
    const older = Array.from({ length: L - recent }, (_, j) => j);
    older.sort((a, b) => rank[b] - rank[a] || a - b);
    const heavy = older.slice(0, budget - recent).sort((a, b) => a - b);
    return [...heavy, ...Array.from({ length: recent }, (_, j) => L - recent + j)];
  });
}

describe('h2o: properties', () => {
  const shape = fc
    .record({ heads: fc.integer({ min: 1, max: 3 }), length: fc.integer({ min: 1, max: 12 }), dim: fc.integer({ min: 1, max: 3 }), seed: fc.integer({ min: 1, max: 1000 }) })
    .chain((s) =>
      fc.record({
        s: fc.constant(s),
        budget: fc.integer({ min: 1, max: s.length }),
        recent: fc.oneof(fc.constantFrom(0, 0.25, 0.5, 0.75), fc.integer({ min: 1, max: 14 })),
        normalize: fc.boolean(),
        // multiples of 1/8 are exact in float32, so ties are frequent and decided by the slot index
        init: fc.array(fc.integer({ min: 0, max: 16 }), { minLength: s.heads * s.length, maxLength: s.heads * s.length }),
        att: fc.array(fc.integer({ min: 0, max: 16 }), { minLength: s.heads * s.length, maxLength: s.heads * s.length }),
      }),
    );

  it('prefill matches the oracle, keeps the recent window, stays sorted and finite, never mutates its input', async () => {
    await fc.assert(
      fc.asyncProperty(shape, async ({ s, budget, recent, normalize, init, att }) => {
        const k = trackedKernels();
        const initScores = init.map((v) => v / 8);
        const layer = upload(k, makeHostLayer(s.heads, s.length, s.dim, s.seed, initScores));
        const attRows = rows(hostTensor('float32', [s.heads, s.length], att.map((v) => v / 8)));
        const a = attention(k, attRows);
        const before = await snapshot(k, layer);
        const out = await new H2OPolicy({ recent, normalize }).prefill(layer, { attention: a }, ctxFor(k, budget, s.length));
        expect(await snapshot(k, layer)).toEqual(before);
        const pos = await positionsOf(k, out);
        const kept = Math.min(budget, s.length);
        const r = recent < 1 ? Math.round(recent * budget) : Math.min(budget, recent);
        for (const row of pos) {
          expect(row.length).toBe(kept);
          for (let j = 1; j < row.length; j++) expect(row[j]).toBeGreaterThan(row[j - 1]);
          for (let j = 0; j < r && s.length > budget; j++) expect(row).toContain(s.length - 1 - j);
        }
        if (s.length > budget) expect(pos).toEqual(oracleKeep(rows(hostTensor('float32', [s.heads, s.length], initScores)), attRows, budget, r, normalize));
        for (const t of [out.keys, out.values, out.scores]) expect(await k.allFinite(t)).toBe(true);
        expect(leaked(k, [layer, a, out])).toBe(0);
      }),
      { numRuns: 40 },
    );
  });

  it('every decode step over budget evicts back to the budget', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ heads: fc.integer({ min: 1, max: 2 }), length: fc.integer({ min: 2, max: 8 }), steps: fc.integer({ min: 1, max: 4 }), seed: fc.integer({ min: 1, max: 99 }) }),
        fc.integer({ min: 1, max: 8 }),
        async ({ heads, length, steps, seed }, b) => {
          const budget = Math.min(b, length);
          const k = trackedKernels();
          const policy = new H2OPolicy({ recent: 1 });
          const layer = upload(k, makeHostLayer(heads, length, 2, seed));
          const a0 = attention(k, Array.from({ length: heads }, (_, h) => Array.from({ length }, (_, j) => ((h + j * seed) % 5) / 5)));
          let cur = await policy.prefill(layer, { attention: a0 }, ctxFor(k, budget, length));
          k.dispose(a0);
          disposeLayer(k, layer, cur);
          for (let step = 1; step <= steps; step++) {
            const grown = appendToken(k, cur, heads, 2, length + step - 1, step);
            const a = attention(k, Array.from({ length: heads }, (_, h) => Array.from({ length: budget + 1 }, (_, j) => ((h * 3 + j + step) % 4) / 4)));
            const next = await policy.step(grown, { attention: a }, ctxFor(k, budget, length, step));
            const pos = await positionsOf(k, next);
            for (const row of pos) {
              expect(row.length).toBe(budget);
              expect(row[row.length - 1]).toBe(length + step - 1);
              for (let j = 1; j < row.length; j++) expect(row[j]).toBeGreaterThan(row[j - 1]);
            }
            k.dispose(a);
            disposeLayer(k, cur);
            disposeLayer(k, grown, next);
            cur = next;
          }
          expect(leaked(k, [cur])).toBe(0);
        },
      ),
      { numRuns: 25 },
    );
  });
});
