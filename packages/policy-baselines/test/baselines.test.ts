import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, KVFold, createContext, disposeLayer, hostTensor, layerToHost, rows, type HostTensor, type KVKernels, type LayerCache } from '@kvfold/core';
import plugin, { FullPolicy, RandomPolicy, WindowPolicy, chainPolicy, fullPolicy, randomPolicy, windowPolicy } from '@kvfold/policy-baselines';
import { leaked, makeHostLayer, positionsOf, snapshot, trackedKernels, upload } from '@kvfold/testkit';

const ctxFor = (k: KVKernels<HostTensor>, budget: number, promptLength: number, step = 0, seed = 0) => createContext({ kernels: k, budget, promptLength, step, seed });

function appendToken(k: KVKernels<HostTensor>, layer: LayerCache<HostTensor>, heads: number, dim: number, position: number): LayerCache<HostTensor> {
  const kv = k.fromHost(hostTensor('float32', [heads, 1, dim], new Array(heads * dim).fill(position)));
  const pos = k.fromHost(hostTensor('int32', [heads, 1], new Array(heads).fill(position)));
  const next = k.append(layer, kv, kv, pos);
  k.dispose(kv, pos);
  return next;
}

describe('full', () => {
  it('returns its input unchanged whatever the budget', async () => {
    const k = trackedKernels();
    const layer = upload(k, makeHostLayer(2, 5, 2));
    const p = new FullPolicy();
    expect(await p.prefill(layer, {}, ctxFor(k, 2, 5))).toBe(layer);
    expect(await p.step(layer, {}, ctxFor(k, 2, 5, 1))).toBe(layer);
    expect(p.needs).toEqual([]);
    expect(() => new FullPolicy({ x: 1 } as never)).toThrow(expect.objectContaining({ code: ErrorCode.Config }));
  });
});

describe('window (StreamingLLM)', () => {
  it('sink 1: keeps slot 0 and the newest slots, values and keys gathered', async () => {
    const k = trackedKernels();
    const input = makeHostLayer(2, 6, 2);
    const layer = upload(k, input);
    const out = await new WindowPolicy({ sink: 1 }).prefill(layer, {}, ctxFor(k, 3, 6));
    const host = await layerToHost(k, out);
    expect(rows(host.positions)).toEqual([
      [0, 4, 5],
      [0, 4, 5],
    ]);
    for (let h = 0; h < 2; h++) {
      [0, 4, 5].forEach((slot, j) => {
        for (let d = 0; d < 2; d++) expect(host.values.data[(h * 3 + j) * 2 + d]).toBe(input.values.data[(h * 6 + slot) * 2 + d]);
      });
    }
    expect(leaked(k, [layer, out])).toBe(0);
  });

  it('clamps the sink to budget - 1 so the newest token stays', async () => {
    const k = trackedKernels();
    const layer = upload(k, makeHostLayer(1, 8, 1));
    expect(await positionsOf(k, await new WindowPolicy().prefill(layer, {}, ctxFor(k, 3, 8)))).toEqual([[0, 1, 7]]);
    expect(await positionsOf(k, await new WindowPolicy().prefill(layer, {}, ctxFor(k, 1, 8)))).toEqual([[7]]);
    expect(await positionsOf(k, await new WindowPolicy({ sink: 0 }).prefill(layer, {}, ctxFor(k, 3, 8)))).toEqual([[5, 6, 7]]);
  });

  it('a decode step over budget evicts the oldest non-sink slot', async () => {
    const k = trackedKernels();
    const policy = new WindowPolicy({ sink: 1 });
    const layer = upload(k, makeHostLayer(1, 8, 2));
    const pre = await policy.prefill(layer, {}, ctxFor(k, 4, 8));
    expect(await positionsOf(k, pre)).toEqual([[0, 5, 6, 7]]);
    const grown = appendToken(k, pre, 1, 2, 8);
    const out = await policy.step(grown, {}, ctxFor(k, 4, 8, 1));
    expect(await positionsOf(k, out)).toEqual([[0, 6, 7, 8]]);
    expect(Array.from((await k.toHost(out.values)).data.subarray(6, 8))).toEqual([8, 8]);
    expect(await policy.step(pre, {}, ctxFor(k, 4, 8, 1))).toBe(pre);
    expect(leaked(k, [layer, pre, grown, out])).toBe(0);
  });

  it('validates options', () => {
    expect(() => new WindowPolicy({ sink: -1 })).toThrow(/sink/);
    expect(() => new WindowPolicy({ sink: 1.5 })).toThrow(expect.objectContaining({ code: ErrorCode.Config }));
    expect(new WindowPolicy().options).toEqual({ sink: 4, decode: 'evict' });
  });
});

describe('random', () => {
  it('is deterministic for a fixed seed and keeps the recent window', async () => {
    const k = trackedKernels();
    const layer = upload(k, makeHostLayer(3, 12, 2));
    const p = new RandomPolicy({ recent: 2 });
    const a = await p.prefill(layer, {}, ctxFor(k, 6, 12, 0, 42));
    const b = await p.prefill(layer, {}, ctxFor(k, 6, 12, 0, 42));
    expect(await snapshot(k, a)).toEqual(await snapshot(k, b));
    for (const row of await positionsOf(k, a)) {
      expect(row.slice(4)).toEqual([10, 11]);
      expect(row.slice(0, 4).every((x) => x < 10)).toBe(true);
    }
  });

  it('samples older slots uniformly', async () => {
    const k = trackedKernels();
    const layer = upload(k, makeHostLayer(1, 10, 1));
    const p = new RandomPolicy({ recent: 1 });
    const hits = new Array(10).fill(0);
    const runs = 600;
    for (let seed = 0; seed < runs; seed++) {
      const out = await p.prefill(layer, {}, ctxFor(k, 5, 10, 0, seed));
      for (const x of (await positionsOf(k, out))[0]) hits[x]++;
      disposeLayer(k, out);
    }
    expect(hits[9]).toBe(runs);
    // each of the 9 older slots is kept with probability 4/9
    for (let j = 0; j < 9; j++) expect(Math.abs(hits[j] / runs - 4 / 9)).toBeLessThan(0.09);
    expect(leaked(k, [layer])).toBe(0);
  });

  it('validates options', () => {
    expect(() => new RandomPolicy({ recent: 1.5 })).toThrow(/recent/);
    expect(new RandomPolicy().options).toEqual({ recent: 0.5, decode: 'evict' });
  });
});

describe('plugin', () => {
  it('registers full, window, random and chain', () => {
    const kv = KVFold.create({ plugins: [plugin] });
    expect(kv.policies.names()).toEqual(['chain', 'full', 'random', 'window']);
    for (const d of [fullPolicy, windowPolicy, randomPolicy, chainPolicy]) {
      expect(d.schema.additionalProperties).toBe(false);
      expect(d.description.length).toBeGreaterThan(20);
    }
  });
});

describe('window and random: properties', () => {
  const cases = fc.record({
    heads: fc.integer({ min: 1, max: 3 }),
    length: fc.integer({ min: 1, max: 12 }),
    dim: fc.integer({ min: 1, max: 3 }),
    budgetRaw: fc.integer({ min: 1, max: 12 }),
    sink: fc.integer({ min: 0, max: 5 }),
    recent: fc.oneof(fc.constantFrom(0, 0.25, 0.5), fc.integer({ min: 1, max: 6 })),
    seed: fc.integer({ min: 0, max: 10_000 }),
    steps: fc.integer({ min: 0, max: 3 }),
  });

  it('length == budget, recent/sink kept, sorted, finite, deterministic, input untouched, no leak; also across decode steps', async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ heads, length, dim, budgetRaw, sink, recent, seed, steps }) => {
        const budget = Math.min(budgetRaw, length);
        const k = trackedKernels();
        const layer = upload(k, makeHostLayer(heads, length, dim, seed));
        const before = await snapshot(k, layer);
        for (const policy of [new WindowPolicy({ sink }), new RandomPolicy({ recent })]) {
          const out = await policy.prefill(layer, {}, ctxFor(k, budget, length, 0, seed));
          const again = await policy.prefill(layer, {}, ctxFor(k, budget, length, 0, seed));
          expect(await snapshot(k, again)).toEqual(await snapshot(k, out));
          expect(await snapshot(k, layer)).toEqual(before);
          let cur = out;
          for (let step = 0; step <= steps; step++) {
            if (step > 0) {
              const grown = appendToken(k, cur, heads, dim, length + step - 1);
              const next = await policy.step(grown, {}, ctxFor(k, budget, length, step, seed));
              disposeLayer(k, grown, next);
              if (cur !== layer) disposeLayer(k, cur, next);
              cur = next;
            }
            const pos = await positionsOf(k, cur);
            const newest = length + step - 1;
            const r = policy instanceof RandomPolicy ? (recent < 1 ? Math.round(recent * budget) : Math.min(budget, recent)) : budget - Math.max(0, Math.min(sink, budget - 1));
            for (const row of pos) {
              expect(row.length).toBe(budget);
              for (let j = 1; j < row.length; j++) expect(row[j]).toBeGreaterThan(row[j - 1]);
              for (let j = 0; j < r; j++) expect(row[budget - 1 - j]).toBe(newest - j);
              if (policy instanceof WindowPolicy && length + step > budget) for (let j = 0; j < budget - r; j++) expect(row[j]).toBe(j);
            }
            expect(await k.allFinite(cur.values)).toBe(true);
          }
          if (cur !== layer) disposeLayer(k, cur, layer);
          disposeLayer(k, again, layer);
        }
        expect(leaked(k, [layer])).toBe(0);
      }),
      { numRuns: 40 },
    );
  });
});
