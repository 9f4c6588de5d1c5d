import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  BudgetError,
  ConfigError,
  KVFold,
  MissingObservationError,
  disposeLayer,
  hostTensor,
  layerTensors,
  layerToHost,
  resolveShare,
  type HostLayer,
  type HostTensor,
  type KVKernels,
  type LayerCache,
} from '@kvfold/core';
import plugin, { KVMergerPolicy, eq4Sigma, kvmergerPolicy, type KVMergerOptions, type SigmaOption } from '../src/index.js';
import referencePlugin from '@kvfold/backend-reference';
import { context, hostLayer, recordingLogger, snapshot, tracked, uniform, upload, walkKeys } from './helpers.js';

type Vec = number[];

/** Expected merge of `members` onto `pivot` with the paper's Gaussian weights, in float64. */
function expectedMerge(keys: Vec[], values: Vec[], members: number[], pivot: number, sigma: number, scale: 'count' | 'none'): { key: Vec; value: Vec } {
  const g = members.map((i) => Math.exp(-keys[pivot]!.reduce((s, x, d) => s + (x - keys[i]![d]!) ** 2, 0) / (2 * sigma * sigma)));
  const sum = g.reduce((a, b) => a + b, 0);
  const w = g.map((x) => x / sum);
  const dim = keys[0]!.length;
  const key = Array.from({ length: dim }, (_, d) => members.reduce((s, i, j) => s + w[j]! * keys[i]![d]!, 0));
  const f = scale === 'count' ? members.length : 1;
  const value = Array.from({ length: dim }, (_, d) => f * members.reduce((s, i, j) => s + w[j]! * values[i]![d]!, 0));
  return { key, value };
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(b[i]!)));
}

/** Rows of a `[heads, n, dim]` float tensor as per-slot vectors of head `h`. */
function vectors(t: HostTensor, h: number): Vec[] {
  const [, n, d] = t.shape as [number, number, number];
  return Array.from({ length: n }, (_, i) => Array.from(t.data.subarray((h * n + i) * d, (h * n + i + 1) * d)));
}

function row(t: HostTensor, h: number): number[] {
  const n = t.shape[1]!;
  return Array.from(t.data.subarray(h * n, (h + 1) * n));
}

/** Every tensor still alive must be an input or an output the caller owns. */
function expectNoLeak(live: Set<HostTensor>, ...owned: (LayerCache<HostTensor> | HostTensor)[]): void {
  const allowed = new Set<HostTensor>(owned.flatMap((o) => ('keys' in o ? layerTensors(o) : [o])));
  expect([...live].filter((t) => !allowed.has(t))).toEqual([]);
}

describe('the worked example (paper mode, eps 0.75, sigma 5)', () => {
  // k1..k5 at angles whose adjacent cosines are 0.85, 0.82, 0.6, 0.7; different norms so weights differ
  const cosines = [0.85, 0.82, 0.6, 0.7];
  const norms = [4, 5, 6, 3, 7];
  const angles = cosines.reduce<number[]>((a, c) => [...a, a[a.length - 1]! + Math.acos(c)], [0]);
  const keys = angles.flatMap((a, i) => [norms[i]! * Math.cos(a), norms[i]! * Math.sin(a)]);
  const values = [1, -2, 0.5, 3, -1, 4, 2, 2, 3, -1];
  const attention = [0.1, 0.2, 0.9, 0.3, 0.05];

  it('merges {k1,k2,k3} onto k3 and keeps k4, k5; key and value match the hand formula', async () => {
    const { kernels: k, live } = tracked();
    const host = hostLayer({ heads: 1, length: 5, headDim: 2, keys, values });
    const { layer, attention: att } = upload(k, host, attention);
    const logger = recordingLogger();
    const policy = new KVMergerPolicy({ mode: 'paper', eps: 0.75, recent: 0, heavy: 0, sigma: { mode: 'fixed', value: 5 } });
    const out = await policy.prefill(layer, { attention: att }, context(k, 3, 5, { logger }));
    const o = await layerToHost(k, out);

    const kv = vectors(host.keys, 0); // float32-rounded inputs
    const vv = vectors(host.values, 0);
    const m = expectedMerge(kv, vv, [0, 1, 2], 2, 5, 'count');
    expect(o.keys.shape).toEqual([1, 3, 2]);
    close(vectors(o.keys, 0)[0]!, m.key);
    close(vectors(o.values, 0)[0]!, m.value);
    close(vectors(o.keys, 0)[1]!, kv[3]!);
    close(vectors(o.keys, 0)[2]!, kv[4]!);
    close(vectors(o.values, 0)[2]!, vv[4]!);
    expect(Array.from(o.positions.data)).toEqual([2, 3, 4]);
    expect(Array.from(o.counts.data)).toEqual([3, 1, 1]);
    close(o.scores.data, [0.1 + 0.2 + 0.9, 0.3, 0.05]);

    expect(policy.lastRatios.get(0)).toBeCloseTo(3 / 5, 12);
    const info = logger.lines.find((l) => l.level === 'info');
    expect(info?.fields).toMatchObject({ layer: 0, eps: 0.75 });
    expect(info?.fields?.ratio).toBeCloseTo(0.6, 12);
    expectNoLeak(live, layer, att, out);
  });

  it('valueScale none gives the weighted mean alone', async () => {
    const { kernels: k } = tracked();
    const host = hostLayer({ heads: 1, length: 5, headDim: 2, keys, values });
    const { layer, attention: att } = upload(k, host, attention);
    const policy = new KVMergerPolicy({ mode: 'paper', recent: 0, heavy: 0, valueScale: 'none' });
    const o = await layerToHost(k, await policy.prefill(layer, { attention: att }, context(k, 3, 5)));
    close(vectors(o.values, 0)[0]!, expectedMerge(vectors(host.keys, 0), vectors(host.values, 0), [0, 1, 2], 2, 5, 'none').value);
  });

  it('exact mode with budget 2 also merges k4,k5 and logs the effective eps 0.7', async () => {
    const { kernels: k } = tracked();
    const host = hostLayer({ heads: 1, length: 5, headDim: 2, keys, values });
    const { layer, attention: att } = upload(k, host, attention);
    const logger = recordingLogger();
    const out = await new KVMergerPolicy({ recent: 0, heavy: 0 }).prefill(layer, { attention: att }, context(k, 2, 5, { logger }));
    const o = await layerToHost(k, out);
    expect(Array.from(o.counts.data)).toEqual([3, 2]);
    expect(Array.from(o.positions.data)).toEqual([2, 3]); // k4 (0.3) outranks k5 (0.05)
    const eps = logger.lines.find((l) => l.level === 'debug')?.fields?.eps as number[];
    expect(eps[0]).toBeCloseTo(0.7, 5);
  });
});

describe('exact mode properties', () => {
  const share = fc.constantFrom(0, 0.1, 0.3, 2, 5);
  const arb = fc.record({
    heads: fc.integer({ min: 1, max: 4 }),
    length: fc.integer({ min: 2, max: 48 }),
    dim: fc.integer({ min: 2, max: 16 }),
    budgetFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    recent: share,
    heavy: share,
    sets: fc.constantFrom('per-head' as const, 'shared' as const),
    valueScale: fc.constantFrom('count' as const, 'none' as const),
    sigma: fc.constantFrom<SigmaOption>(5, { mode: 'rms' }, { mode: 'eq4', iterations: 5 }, { mode: 'fixed', value: 0.5 }),
    seed: fc.integer({ min: 0, max: 1_000_000 }),
  });

  it('length == budget, recent window verbatim, counts and positions consistent, weights sum to 1, deterministic, input untouched, no leak', async () => {
    await fc.assert(
      fc.asyncProperty(arb, async (p) => {
        const { heads: H, length: L, dim: D } = p;
        const budget = Math.max(1, Math.round(p.budgetFrac * L));
        const { kernels: k, live } = tracked();
        const c = uniform(p.seed + 1, H * D, 0.5, 2); // one constant value vector per head
        const values = Float32Array.from({ length: H * L * D }, (_, j) => c[Math.floor(j / (L * D)) * D + (j % D)]!);
        const host = hostLayer({ heads: H, length: L, headDim: D, keys: walkKeys(p.seed, H, L, D), values });
        const { layer, attention } = upload(k, host, uniform(p.seed + 2, H * L, 0, 1));
        const before = await snapshot(k, layer);
        const opts: KVMergerOptions = { recent: p.recent, heavy: p.heavy, sets: p.sets, valueScale: p.valueScale, sigma: p.sigma };
        const out = await new KVMergerPolicy(opts).prefill(layer, { attention }, context(k, budget, L));
        const o = await layerToHost(k, out);

        expect(o.keys.shape).toEqual([H, budget, D]);
        expect(await k.allFinite(out.keys)).toBe(true);
        expect(await k.allFinite(out.values)).toBe(true);
        expect(await snapshot(k, layer)).toEqual(before);

        const R = resolveShare(p.recent, budget);
        const Hv = Math.min(resolveShare(p.heavy, budget), L - R);
        const noTrim = budget >= R + 2 * Hv + 1 || budget === L;
        for (let h = 0; h < H; h++) {
          const pos = row(o.positions, h);
          const cnt = row(o.counts, h);
          pos.forEach((x, i) => i > 0 && expect(x).toBeGreaterThan(pos[i - 1]!));
          cnt.forEach((x) => expect(x).toBeGreaterThanOrEqual(1));
          const total = cnt.reduce((a, b) => a + b, 0);
          if (noTrim) expect(total).toBe(L);
          else expect(total).toBeLessThanOrEqual(L);
          const ik = vectors(host.keys, h);
          const ok = vectors(o.keys, h);
          for (let j = 0; j < R; j++) {
            const oi = budget - R + j;
            expect(pos[oi]).toBe(L - R + j);
            expect(cnt[oi]).toBe(1);
            expect(ok[oi]).toEqual(ik[L - R + j]);
          }
          const ov = vectors(o.values, h);
          const ch = Array.from(c.subarray(h * D, (h + 1) * D));
          ov.forEach((v, i) => close(v, ch.map((x) => (p.valueScale === 'count' ? cnt[i]! * x : x)), 1e-5));
        }

        const again = await new KVMergerPolicy(opts).prefill(layer, { attention }, context(k, budget, L));
        expect(await snapshot(k, again)).toEqual(await snapshot(k, out));
        expectNoLeak(live, layer, attention, out, again);
      }),
      { numRuns: 40 },
    );
  });
});

describe('host arrays reused from call to call', () => {
  const layerArb = fc.record({
    heads: fc.integer({ min: 1, max: 3 }),
    length: fc.integer({ min: 2, max: 40 }),
    dim: fc.integer({ min: 2, max: 8 }),
    budgetFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    seed: fc.integer({ min: 0, max: 1_000_000 }),
  });
  const optionsArb = fc.record({
    mode: fc.constantFrom('exact' as const, 'paper' as const),
    recent: fc.constantFrom(0, 0.1, 0.3, 2),
    heavy: fc.constantFrom(0, 0.1, 0.3, 2),
    sets: fc.constantFrom('per-head' as const, 'shared' as const),
    sigma: fc.constantFrom<SigmaOption>(5, { mode: 'rms' }),
  });

  it('one policy over layers of changing shapes, one after another and all at once, gives what a fresh policy gives each', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(layerArb, { minLength: 2, maxLength: 4 }), optionsArb, async (specs, opts) => {
        const { kernels: k } = tracked();
        const cases = specs.map((p) => {
          const host = hostLayer({ heads: p.heads, length: p.length, headDim: p.dim, keys: walkKeys(p.seed, p.heads, p.length, p.dim), values: uniform(p.seed + 1, p.heads * p.length * p.dim) });
          return { ...upload(k, host, uniform(p.seed + 2, p.heads * p.length, 0, 1)), budget: Math.max(1, Math.round(p.budgetFrac * p.length)), length: p.length };
        });
        const fresh = [];
        for (const c of cases) fresh.push(await snapshot(k, await new KVMergerPolicy(opts).prefill(c.layer, { attention: c.attention }, context(k, c.budget, c.length))));
        const shared = new KVMergerPolicy(opts);
        for (const [i, c] of cases.entries()) {
          expect(await snapshot(k, await shared.prefill(c.layer, { attention: c.attention }, context(k, c.budget, c.length)))).toEqual(fresh[i]);
        }
        // Started together, the calls interleave at every await: each must plan in arrays of its own.
        const together = await Promise.all(cases.map((c) => shared.prefill(c.layer, { attention: c.attention }, context(k, c.budget, c.length))));
        for (const [i, out] of together.entries()) expect(await snapshot(k, out)).toEqual(fresh[i]);
      }),
      { numRuns: 60, seed: 11 },
    );
  });
});

/** Two heads whose similar runs lie in opposite halves; head 0 attends late slots, head 1 early ones. */
function twoHeadLayer(): { host: HostLayer; attention: number[] } {
  const L = 12;
  const D = 4;
  const keys = new Float32Array(2 * L * D);
  const noise = uniform(7, 2 * L * D, -0.01, 0.01);
  for (let h = 0; h < 2; h++) {
    for (let i = 0; i < L; i++) {
      const similar = h === 0 ? i < 6 : i >= 6;
      const axis = similar ? 0 : 1 + (i % 3);
      for (let d = 0; d < D; d++) keys[(h * L + i) * D + d] = (d === axis ? 1 : 0) + noise[(h * L + i) * D + d]!;
    }
  }
  const attention = [...Array.from({ length: L }, (_, i) => (i + 1) / 10), ...Array.from({ length: L }, (_, i) => (L - i) / 10)];
  return { host: hostLayer({ heads: 2, length: L, headDim: D, keys, values: uniform(8, 2 * L * D) }), attention };
}

describe('sets: per-head vs shared', () => {
  it('per-head merges each head where its own keys are similar; shared uses one layout with per-head pivots', async () => {
    const { kernels: k } = tracked();
    const { host, attention } = twoHeadLayer();
    const up = upload(k, host, attention);
    const per = await layerToHost(k, await new KVMergerPolicy({ recent: 0, heavy: 0 }).prefill(up.layer, { attention: up.attention }, context(k, 8, 12)));
    const shared = await layerToHost(k, await new KVMergerPolicy({ recent: 0, heavy: 0, sets: 'shared' }).prefill(up.layer, { attention: up.attention }, context(k, 8, 12)));

    // per-head: head 0 merges only slots < 6, head 1 only slots >= 6
    const mergedPositions = (o: HostLayer, h: number) => row(o.positions, h).filter((_, i) => row(o.counts, h)[i]! > 1);
    expect(mergedPositions(per, 0).length).toBeGreaterThan(0);
    expect(mergedPositions(per, 0).every((p) => p < 6)).toBe(true);
    expect(mergedPositions(per, 1).every((p) => p >= 6)).toBe(true);
    expect(row(per.counts, 0)).not.toEqual(row(per.counts, 1));

    // shared: same layout (counts) on both heads, but pivots follow each head's attention
    expect(row(shared.counts, 0)).toEqual(row(shared.counts, 1));
    const cnt = row(shared.counts, 0);
    expect(cnt.some((x) => x > 1)).toBe(true);
    cnt.forEach((x, i) => {
      if (x > 1) expect(row(shared.positions, 0)[i]).toBeGreaterThan(row(shared.positions, 1)[i]!);
    });
  });
});

describe('skipLayers', () => {
  it('skipped layers (0 and -1) are evicted H2O-style to the budget; others merge', async () => {
    const { kernels: k } = tracked();
    const L = 16;
    const keys = Float32Array.from({ length: 2 * L * 4 }, (_, j) => 1 + 0.01 * Math.sin(j)); // all very similar
    const attention = Array.from(uniform(11, 2 * L, 0, 1));
    const host = hostLayer({ heads: 2, length: L, headDim: 4, keys, values: uniform(12, 2 * L * 4) });
    const policy = new KVMergerPolicy({ recent: 2, heavy: 0.1, skipLayers: [0, -1] });
    expect(policy.isSkipped(3, 4)).toBe(true);
    expect(policy.isSkipped(2, 4)).toBe(false);
    for (const layerIndex of [0, 1, 2, 3]) {
      const up = upload(k, host, attention);
      const o = await layerToHost(k, await policy.prefill(up.layer, { attention: up.attention }, context(k, 8, L, { layerIndex, layerCount: 4 })));
      for (let h = 0; h < 2; h++) {
        if (layerIndex === 0 || layerIndex === 3) {
          // last 2 slots plus the top 6 scores among the first 14 (ties to the lower index)
          const sc = attention.slice(h * L, h * L + L - 2);
          const top = sc.map((s, i) => [s, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, 6).map((x) => x[1]);
          expect(row(o.positions, h)).toEqual([...top.sort((a, b) => a - b), L - 2, L - 1]);
          expect(row(o.counts, h).every((x) => x === 1)).toBe(true);
        } else {
          expect(row(o.counts, h).some((x) => x > 1)).toBe(true);
          expect(row(o.counts, h).reduce((a, b) => a + b, 0)).toBe(L);
        }
      }
    }
  });
});

/** Append one token and step; returns the new cache (old one disposed). */
async function decode(k: KVKernels<HostTensor>, policy: KVMergerPolicy, layer: LayerCache<HostTensor>, t: number, budget: number, promptLength: number, heads: number, dim: number): Promise<LayerCache<HostTensor>> {
  const kk = k.fromHost(hostTensor('float32', [heads, 1, dim], uniform(100 + t, heads * dim)));
  const vv = k.fromHost(hostTensor('float32', [heads, 1, dim], uniform(200 + t, heads * dim)));
  const pp = k.fromHost(hostTensor('int32', [heads, 1], new Array(heads).fill(promptLength + t)));
  const appended = k.append(layer, kk, vv, pp);
  k.dispose(kk, vv, pp);
  disposeLayer(k, layer, appended);
  const n = k.shapeOf(appended.keys)[1]!;
  const att = k.fromHost(hostTensor('float32', [heads, n], uniform(300 + t, heads * n, 0, 1)));
  const next = await policy.step(appended, { attention: att }, context(k, budget, promptLength, { step: t + 1, newTokens: 1 }));
  k.dispose(att);
  disposeLayer(k, appended, next);
  return next;
}

describe('decodeInterval', () => {
  const H = 2;
  const D = 4;
  const P = 10;
  const budget = 6;

  async function lengths(options: KVMergerOptions): Promise<{ lengths: number[]; totals: number[]; live: number }> {
    const { kernels: k, live } = tracked();
    const up = upload(k, hostLayer({ heads: H, length: P, headDim: D, keys: walkKeys(3, H, P, D), values: uniform(4, H * P * D) }), uniform(5, H * P, 0, 1));
    const policy = new KVMergerPolicy(options);
    let layer = await policy.prefill(up.layer, { attention: up.attention }, context(k, budget, P));
    k.dispose(up.attention);
    disposeLayer(k, up.layer, layer);
    const out: number[] = [k.shapeOf(layer.keys)[1]!];
    const totals: number[] = [];
    for (let t = 0; t < 6; t++) {
      layer = await decode(k, policy, layer, t, budget, P, H, D);
      out.push(k.shapeOf(layer.keys)[1]!);
      const c = await k.toHost(layer.counts);
      totals.push(row(c, 0).reduce((a, b) => a + b, 0));
      const pos = row(await k.toHost(layer.positions), 1);
      expect(pos[pos.length - 1]).toBe(P + t); // the newest token is kept (recent window)
    }
    disposeLayer(k, layer);
    return { lengths: out, totals, live: live.size };
  }

  it('re-merges back to the budget once the cache exceeds budget + N, keeping every token counted', async () => {
    const r = await lengths({ recent: 1, heavy: 1, decodeInterval: 3 });
    expect(r.lengths).toEqual([6, 7, 8, 9, 6, 7, 8]);
    expect(r.totals).toEqual([11, 12, 13, 14, 15, 16]);
    expect(r.live).toBe(0);
  });

  it('with 0 (default) the cache grows during decoding', async () => {
    const r = await lengths({ recent: 1, heavy: 1 });
    expect(r.lengths).toEqual([6, 7, 8, 9, 10, 11, 12]);
    expect(r.live).toBe(0);
  });

  it('step accumulates the new attention into the scores', async () => {
    const { kernels: k } = tracked();
    const up = upload(k, hostLayer({ heads: 1, length: 3, headDim: 2, keys: [1, 0, 0, 1, 1, 1], values: [1, 2, 3, 4, 5, 6], scores: [1, 2, 3] }), [0.5, 0.25, 0.25]);
    const out = await new KVMergerPolicy().step(up.layer, { attention: up.attention }, context(k, 3, 3, { step: 1 }));
    close((await k.toHost(out.scores)).data, [1.5, 2.25, 3.25]);
    expect(out.keys).toBe(up.layer.keys);
  });

  it('paper mode re-merges to what its prefill kept when that exceeds the budget', async () => {
    const { kernels: k } = tracked();
    // orthogonal alternating keys: no link above eps, so paper mode keeps all 10 slots
    const keys = Float32Array.from({ length: P * 2 }, (_, j) => ((j >> 1) % 2 === (j & 1) ? 1 : 0));
    const up = upload(k, hostLayer({ heads: 1, length: P, headDim: 2, keys, values: uniform(1, P * 2) }), uniform(2, P, 0, 1));
    const policy = new KVMergerPolicy({ mode: 'paper', decodeInterval: 1, recent: 1, heavy: 1 });
    let layer = await policy.prefill(up.layer, { attention: up.attention }, context(k, budget, P));
    expect(k.shapeOf(layer.keys)[1]).toBe(P);
    expect(policy.lastRatios.get(0)).toBe(1);
    const seen: number[] = [];
    for (let t = 0; t < 3; t++) {
      layer = await decode(k, policy, layer, t, budget, P, 1, 2);
      seen.push(k.shapeOf(layer.keys)[1]!);
    }
    expect(seen).toEqual([11, 10, 11]);
  });
});

describe('sigma modes end to end', () => {
  // set {0,1,2} (similar directions, different norms), slot 3 orthogonal; slot 1 has the highest attention
  const keys = [3, 0.3, 5, 0.4, 4.2, 0.5, 0, 6];
  const values = [1, 2, 3, 4, 5, 6, 7, 8];
  const attention = [0.1, 0.7, 0.2, 0.05];

  async function merged(sigma: SigmaOption, k2 = keys): Promise<{ key: Vec; value: Vec; host: HostLayer }> {
    const { kernels: k } = tracked();
    const host = hostLayer({ heads: 1, length: 4, headDim: 2, keys: k2, values });
    const up = upload(k, host, attention);
    const o = await layerToHost(k, await new KVMergerPolicy({ recent: 0, heavy: 0, sigma }).prefill(up.layer, { attention: up.attention }, context(k, 2, 4)));
    expect(Array.from(o.counts.data)).toEqual([3, 1]);
    expect(Array.from(o.positions.data)).toEqual([1, 3]);
    return { key: vectors(o.keys, 0)[0]!, value: vectors(o.values, 0)[0]!, host };
  }

  const d2 = (kv: Vec[]) => [0, 2].map((i) => kv[1]!.reduce((s, x, d) => s + (x - kv[i]![d]!) ** 2, 0));

  it('rms: sigma^2 = mean squared distance of the other members to the pivot', async () => {
    const r = await merged({ mode: 'rms' });
    const kv = vectors(r.host.keys, 0);
    const sigma = Math.sqrt(d2(kv).reduce((a, b) => a + b, 0) / 2);
    const m = expectedMerge(kv, vectors(r.host.values, 0), [0, 1, 2], 1, sigma, 'count');
    close(r.key, m.key, 1e-5);
    close(r.value, m.value, 1e-5);
  });

  it('eq4: the fixed point of the paper formula', async () => {
    const r = await merged({ mode: 'eq4', value: 5, iterations: 30 });
    const kv = vectors(r.host.keys, 0);
    const m = expectedMerge(kv, vectors(r.host.values, 0), [0, 1, 2], 1, eq4Sigma(d2(kv), 5, 30), 'count');
    close(r.key, m.key, 1e-5);
  });

  it('fixed: a bare number and {mode: fixed} agree, and a different sigma changes the merge', async () => {
    const a = await merged(2);
    const b = await merged({ mode: 'fixed', value: 2 });
    const c = await merged(5);
    expect(a.key).toEqual(b.key);
    expect(a.key).not.toEqual(c.key);
  });

  it('rms with members equal to the pivot falls back to the configured value and stays finite', async () => {
    const same = [1, 1, 1, 1, 1, 1, 0, 6];
    const r = await merged({ mode: 'rms', value: 3 }, same);
    close(r.key, [1, 1]);
    expect(r.value.every(Number.isFinite)).toBe(true);
  });
});

describe('trimming when the protected slots exceed the budget', () => {
  it('evicts every unprotected slot, then the lowest heavy hitters', async () => {
    const { kernels: k } = tracked();
    const attention = [5, 1, 7, 2, 6, 0.5, 9, 3, 3, 3];
    const up = upload(k, hostLayer({ heads: 1, length: 10, headDim: 3, keys: walkKeys(1, 1, 10, 3), values: uniform(2, 30) }), attention);
    const o = await layerToHost(k, await new KVMergerPolicy({ recent: 3, heavy: 3 }).prefill(up.layer, { attention: up.attention }, context(k, 4, 10)));
    expect(Array.from(o.positions.data)).toEqual([6, 7, 8, 9]);
    expect(Array.from(o.counts.data)).toEqual([1, 1, 1, 1]);
  });

  it('minSimilarity 1 forbids merging, so the layer is evicted like H2O', async () => {
    const { kernels: k } = tracked();
    const attention = [5, 1, 7, 2, 6, 0.5, 9, 3, 3, 3];
    const keys = Float32Array.from({ length: 30 }, (_, j) => (j % 3) + 1 + 0.1 * j); // similar but never identical in direction
    const up = upload(k, hostLayer({ heads: 1, length: 10, headDim: 3, keys, values: uniform(2, 30) }), attention);
    const o = await layerToHost(k, await new KVMergerPolicy({ recent: 1, heavy: 1, minSimilarity: 1 }).prefill(up.layer, { attention: up.attention }, context(k, 5, 10)));
    // recent 9; then the top-4 remaining scores: 6 (9), 2 (7), 4 (6), 0 (5)
    expect(Array.from(o.positions.data)).toEqual([0, 2, 4, 6, 9]);
    expect(Array.from(o.counts.data)).toEqual([1, 1, 1, 1, 1]);
  });
});

describe('errors and registration', () => {
  it('rejects bad options with a ConfigError naming the option', () => {
    const bad: unknown[] = [{ eps: 2 }, { recent: 1.5 }, { recent: -1 }, { sigma: { mode: 'rms', iterations: 3 } }, { sigma: 0 }, { mode: 'fast' }, { decodeInterval: -1 }, { nope: 1 }];
    for (const o of bad) {
      let err: unknown;
      try {
        new KVMergerPolicy(o as KVMergerOptions);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('KVF_CONFIG');
      expect((err as ConfigError).issues.length).toBeGreaterThan(0);
    }
    expect(new KVMergerPolicy({ recent: 0, heavy: 3, sigma: 5 }).options).toMatchObject({ recent: 0, heavy: 3, sigma: { mode: 'fixed', value: 5 } });
  });

  it('fills defaults', () => {
    expect(new KVMergerPolicy().options).toEqual({
      recent: 0.1,
      heavy: 0.1,
      mode: 'exact',
      eps: 0.75,
      minSimilarity: -1,
      sets: 'per-head',
      sigma: { mode: 'fixed', value: 5 },
      valueScale: 'count',
      skipLayers: [],
      decodeInterval: 0,
    });
  });

  it('throws MissingObservationError without attention and BudgetError for a bad budget, allocating nothing', async () => {
    const { kernels: k, live } = tracked();
    const up = upload(k, hostLayer({ heads: 1, length: 4, headDim: 2, keys: uniform(1, 8), values: uniform(2, 8) }), [1, 1, 1, 1]);
    const p = new KVMergerPolicy();
    await expect(p.prefill(up.layer, {}, context(k, 2, 4))).rejects.toBeInstanceOf(MissingObservationError);
    await expect(p.step(up.layer, {}, context(k, 2, 4, { step: 1 }))).rejects.toBeInstanceOf(MissingObservationError);
    await expect(p.prefill(up.layer, { attention: up.attention }, context(k, 0, 4))).rejects.toBeInstanceOf(BudgetError);
    expectNoLeak(live, up.layer, up.attention);
  });

  it('registers through the plugin; the DESIGN config validates; guarded policy runs', async () => {
    // the reference backend is registered too: core cannot compose a schema with no backend at all
    const kv = KVFold.create({ plugins: [plugin, referencePlugin] });
    expect(plugin.name).toBe('@kvfold/policy-kvmerger');
    expect(kvmergerPolicy.name).toBe('kvmerger');
    const cfg = kv.validate({ policy: { name: 'kvmerger', budget: 0.5, options: { eps: 0.75, sigma: 5 } } });
    expect(cfg.policy.options).toMatchObject({ eps: 0.75, sigma: 5, mode: 'exact', recent: 0.1 });
    expect(() => kv.validate({ policy: { name: 'kvmerger', budget: 0.5, options: { sets: 'both' } } })).toThrow(ConfigError);
    const policy = kv.policy('kvmerger', { mode: 'paper', recent: 0, heavy: 0 });
    const { kernels: k } = tracked();
    const up = upload(k, hostLayer({ heads: 2, length: 6, headDim: 3, keys: walkKeys(9, 2, 6, 3), values: uniform(9, 36) }), uniform(10, 12, 0, 1));
    const out = await policy.prefill(up.layer, { attention: up.attention }, context(k, 3, 6));
    expect(k.shapeOf(out.keys)[0]).toBe(2);
  });
});
