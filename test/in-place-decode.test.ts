// In-place decode eviction (issue 12, target 4): on writable backends a decode step that drops one slot
// per head moves the newest row over it and leaves a spare last row, and the next one-token append fills
// that row. The kept slots and their contents must be the functional path's: compared here step by step,
// on random caches and options, after putting the in-place cache back in position order.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CacheManager,
  ErrorCode,
  SPARE_POSITION,
  ROW_SPAN,
  appendInPlace,
  chooseEvicted,
  compactLayer,
  createContext,
  disposeLayer,
  evictInPlace,
  guardPolicy,
  isOrdered,
  hostTensor,
  layerFromHost,
  layerToHost,
  layerViews,
  type HostLayer,
  type KVCachePolicy,
  type KVKernels,
  type LayerCache,
  type LayerViews,
} from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { createOnnxKernels } from '@kvfold/backend-onnx';
import { createTfjsKernels } from '@kvfold/backend-tfjs';
import { H2OPolicy } from '@kvfold/policy-h2o';
import { CaMPolicy } from '@kvfold/policy-cam';
import { expectLayerClose, mulberry32, positionsLayer, randomLayer } from '@kvfold/testkit';

const reference = createReferenceKernels();
const backends: [string, KVKernels<unknown>][] = [
  ['reference', reference as KVKernels<unknown>],
  ['onnx', createOnnxKernels({ threads: 1 }) as KVKernels<unknown>],
  ['tfjs', (await createTfjsKernels()) as unknown as KVKernels<unknown>],
];

/** Attention a head's slot at `pos` receives at `step`: a function of the token, so both layouts see the same. */
function attentionAt(seed: number, step: number, h: number, pos: number, ties: boolean, nan: boolean): number {
  const r = mulberry32(seed * 7919 + step * 104_729 + h * 1_299_709 + pos * 15_485_863);
  const x = r();
  if (ties) return Math.floor(x * 3) / 4;
  // Unguarded runs also see NaN (ranked lowest, like topK); the guard refuses it.
  return nan && x < 0.03 ? Number.NaN : x;
}

/** The observation of `layer`'s slots (spare rows get 0). */
async function observe<T>(k: KVKernels<T>, layer: LayerCache<T>, seed: number, step: number, ties: boolean, nan: boolean): Promise<T> {
  const p = await k.toHost(layer.positions);
  const [H, L] = p.shape as [number, number];
  const data = new Float32Array(H * L);
  for (let h = 0; h < H; h++) for (let j = 0; j < L; j++) data[h * L + j] = p.data[h * L + j] === SPARE_POSITION ? 0 : attentionAt(seed, step, h, p.data[h * L + j]!, ties, nan);
  return k.fromHost(hostTensor('float32', [H, L], data));
}

/** The same new token for both layouts: keys, values `[H, 1, D]` and its position. */
function token(H: number, D: number, seed: number, pos: number) {
  const r = mulberry32(seed + pos * 31);
  return {
    keys: hostTensor('float32', [H, 1, D], Float32Array.from({ length: H * D }, () => r() * 4 - 2)),
    values: hostTensor('float32', [H, 1, D], Float32Array.from({ length: H * D }, () => r() * 4 - 2)),
    positions: new Int32Array(H).fill(pos),
  };
}

async function ordered<T>(k: KVKernels<T>, layer: LayerCache<T>): Promise<HostLayer> {
  const c = compactLayer(k, layer);
  try {
    return await layerToHost(k, c);
  } finally {
    if (c !== layer) disposeLayer(k, c);
  }
}

/**
 * Run `steps` decode steps of `make()` from a cache of `budget + 1` slots twice, functionally and in place
 * (the in-place run guarded when `guard`), and compare the caches after every step.
 */
async function compareRuns<T>(k: KVKernels<T>, make: () => KVCachePolicy, H: number, budget: number, D: number, steps: number, seed: number, ties: boolean, guard: boolean, dense: boolean): Promise<void> {
  const start = randomLayer(H, budget + 1, D, mulberry32(seed));
  // Dense positions (0, 1, 2, ...: a real prompt) take chooseEvicted's two-pass path; gaps its ranking by quickselect.
  if (dense) for (let i = 0; i < start.positions.data.length; i++) start.positions.data[i] = i % (budget + 1);
  const host = { ...start, counts: hostTensor('int32', [H, budget + 1], new Int32Array(H * (budget + 1)).fill(1)) };
  let fn = layerFromHost(k, host);
  let ip = layerFromHost(k, host);
  const fPolicy = make();
  const iPolicy = guard ? guardPolicy(make()) : make();
  let next = Math.max(...Array.from(start.positions.data)) + 1;
  for (let step = 1; step <= steps; step++) {
    const base = { kernels: k, budget, promptLength: budget, step, seed, newTokens: 1 };
    const fo = await observe(k, fn, seed, step, ties, !guard);
    const io = await observe(k, ip, seed, step, ties, !guard);
    const fOut = await fPolicy.step(fn, { attention: fo }, createContext(base));
    const iOut = await iPolicy.step(ip, { attention: io }, createContext({ ...base, inPlace: true }));
    k.dispose(fo, io);
    disposeLayer(k, fn, fOut);
    disposeLayer(k, ip, iOut);
    const want = await layerToHost(k, fOut);
    expectLayerClose(await ordered(k, iOut), want, `step ${step}`);
    // The spare row an in-place step leaves, then the same token appended both ways.
    const views = layerViews(k, iOut)!;
    expect(views.counts[budget]).toBe(0);
    const t = token(H, D, seed, next++);
    const [kt, vt] = [k.fromHost(t.keys), k.fromHost(t.values)];
    const [kt2, vt2] = [k.fromHost(t.keys), k.fromHost(t.values)];
    expect(appendInPlace(k, iOut, kt, vt, t.positions)).toBe(true);
    const pos = k.fromHost(hostTensor('int32', [H, 1], t.positions));
    fn = k.append(fOut, kt2, vt2, pos);
    k.dispose(kt, vt, kt2, vt2, pos);
    disposeLayer(k, fOut, fn);
    ip = iOut;
  }
  disposeLayer(k, fn);
  disposeLayer(k, ip);
}

const policies = fc.oneof(
  fc.record({ kind: fc.constant('h2o' as const), recent: fc.oneof(fc.constantFrom(0, 0.25, 0.5), fc.integer({ min: 1, max: 6 })), normalize: fc.boolean() }),
  fc.record({
    kind: fc.constant('cam' as const),
    recent: fc.oneof(fc.constantFrom(0, 0.5), fc.integer({ min: 1, max: 6 })),
    mergeBudget: fc.integer({ min: 1, max: 6 }),
    gate: fc.constantFrom('bernoulli' as const, 'expected' as const),
    evict: fc.constantFrom('h2o' as const, 'window' as const),
    sink: fc.integer({ min: 0, max: 4 }),
  }),
);

function policyOf(p: { kind: 'h2o' | 'cam' } & Record<string, unknown>): () => KVCachePolicy {
  if (p.kind === 'h2o') return () => new H2OPolicy({ recent: p.recent as number, normalize: p.normalize as boolean });
  return () => new CaMPolicy({ recent: p.recent as number, mergeBudget: p.mergeBudget as number, gate: p.gate as 'bernoulli', evict: p.evict as 'h2o', sink: p.sink as number });
}

describe('in-place decode eviction keeps what the functional step keeps', () => {
  for (const [name, k] of backends) {
    it(`${name}: H2O and CaM, random caches, options and ties, several steps (guarded and not)`, async () => {
      await fc.assert(
        fc.asyncProperty(
          policies,
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 2, max: 20 }),
          fc.integer({ min: 1, max: 6 }),
          fc.integer({ min: 1, max: 5 }),
          fc.integer({ min: 0, max: 1_000_000 }),
          fc.boolean(),
          fc.boolean(),
          fc.boolean(),
          async (p, H, budget, D, steps, seed, ties, guard, dense) => {
            await compareRuns(k, policyOf(p), H, budget, D, steps, seed, ties, guard, dense);
          },
        ),
        { numRuns: name === 'reference' ? 200 : 60, seed: 12 },
      );
    });
  }
});

/**
 * The rule chooseEvicted implements, the slow way: per head, rows ranked by key (position, then row); the
 * `sink` lowest and `recent` highest are protected; of the rest, the lowest score (NaN as -Infinity) goes,
 * ties to the highest key.
 */
function evictedByOracle(positions: Int32Array, H: number, L: number, scores: Float32Array | undefined, rowsOfScores: number, sinkOption: number, recentOption: number): number[] {
  const budget = L - 1;
  const sink = Math.max(0, Math.min(sinkOption, budget));
  const recent = Math.max(0, Math.min(recentOption, budget - sink));
  const out: number[] = [];
  for (let h = 0; h < H; h++) {
    const order = Array.from({ length: L }, (_, j) => j).sort((a, b) => positions[h * L + a]! * ROW_SPAN + a - (positions[h * L + b]! * ROW_SPAN + b));
    const candidates = order.slice(sink, L - recent);
    const score = (j: number) => {
      const x = scores === undefined ? 0 : scores[(rowsOfScores === 1 ? 0 : h) * L + j]!;
      return Number.isNaN(x) ? -Infinity : x;
    };
    // Candidates ascend by key: the last of the lowest scores is the highest key among them.
    let best = candidates[0]!;
    for (const j of candidates) if (score(j) <= score(best)) best = j;
    out.push(best);
  }
  return out;
}

describe('chooseEvicted: the slot the shared selection drops, by any path', () => {
  // Positions as a decode cache holds them (sinks in row 0, newest in the last row), shuffled, with
  // repeats, and with the first and last rows swapped away: the one-pass guess, its exact retry and the
  // ranked fallback all run.
  const layouts = fc.constantFrom('dense' as const, 'decode' as const, 'shuffled' as const, 'repeats' as const, 'gaps' as const, 'extreme' as const);
  it('equals the ranked oracle on random positions, scores (ties, NaN, infinities), sinks and windows', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 24 }),
        layouts,
        fc.integer({ min: 0, max: 6 }),
        fc.integer({ min: 0, max: 30 }),
        fc.constantFrom('plain' as const, 'ties' as const, 'special' as const),
        fc.boolean(),
        fc.integer({ min: 0, max: 1_000_000 }),
        (H, budget, layout, sinkOption, recentOption, kind, shared, seed) => {
          const L = budget + 1;
          const r = mulberry32(seed);
          const positions = new Int32Array(H * L);
          for (let h = 0; h < H; h++) {
            // extreme: any int32, the ends included (the guessed thresholds leave the int32 range there).
            const ends = [-2_147_483_648, -2_147_483_647, 2_147_483_646, 2_147_483_647];
            const int32 = () => (r() < 0.5 ? ends[Math.floor(r() * 4)]! : Math.floor(r() * 2 ** 32) - 2 ** 31);
            const row = Array.from({ length: L }, (_, j) => (layout === 'extreme' ? int32() : layout === 'repeats' ? Math.floor(r() * (L / 2 + 1)) : layout === 'gaps' ? j * 3 + Math.floor(r() * 3) : j));
            if (layout === 'shuffled' || layout === 'repeats')
              for (let j = L - 1; j > 0; j--) {
                const i = Math.floor(r() * (j + 1));
                [row[i], row[j]] = [row[j]!, row[i]!];
              }
            if (layout === 'decode') {
              // Rows 1..L-2 shuffled: an in-place cache after some steps; row 0 a sink, the last row newest.
              for (let j = L - 2; j > 1; j--) {
                const i = 1 + Math.floor(r() * j);
                [row[i], row[j]] = [row[j]!, row[i]!];
              }
            }
            positions.set(row, h * L);
          }
          const sink = Math.min(sinkOption, budget);
          const recent = Math.min(recentOption, budget - sink);
          const rowsOfScores = shared ? 1 : H;
          const special = [Number.NaN, Infinity, -Infinity, 0, 0.5];
          const scores =
            budget - sink - recent === 0 && r() < 0.5
              ? undefined
              : Float32Array.from({ length: rowsOfScores * L }, () => (kind === 'ties' ? Math.floor(r() * 3) / 4 : kind === 'special' && r() < 0.3 ? special[Math.floor(r() * special.length)]! : r()));
          const views = { positions, heads: H, length: L, headDim: 1 } as unknown as LayerViews;
          const got = chooseEvicted(views, scores === undefined ? undefined : { data: scores, rows: rowsOfScores }, budget, sinkOption, recentOption);
          expect(Array.from(got)).toEqual(evictedByOracle(positions, H, L, scores, rowsOfScores, sinkOption, recentOption));
        },
      ),
      { numRuns: 2000, seed: 7 },
    );
  });
  it('isOrdered: every row live and positions strictly increasing per head, as a plain check says', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 1_000_000 }), (H, L, seed) => {
        const r = mulberry32(seed);
        const positions = Int32Array.from({ length: H * L }, (_, i) => (i % Math.max(1, L)) * 2 + (r() < 0.15 ? -2 : 0));
        const counts = Int32Array.from({ length: H * L }, () => (r() < 0.1 ? 0 : 1));
        let want = true;
        for (let h = 0; h < H; h++)
          for (let j = 0; j < L; j++) {
            if (counts[h * L + j] === 0) want = false;
            if (j > 0 && positions[h * L + j]! <= positions[h * L + j - 1]!) want = false;
          }
        expect(isOrdered({ positions, counts, heads: H, length: L, headDim: 1 } as unknown as LayerViews)).toBe(want);
      }),
      { numRuns: 500, seed: 5 },
    );
  });
  it('by hand: a guess from the last row that is not the highest position still finds the ranked window', () => {
    // Positions 0, 100, 10, 20, 50 (the newest, 50, is not the highest); recent 2 protects 100 and 50. The
    // first row's scores would pick row 1 (position 100) if the window were wrong.
    const positions = Int32Array.of(0, 100, 10, 20, 50);
    const views = { positions, heads: 1, length: 5, headDim: 1 } as unknown as LayerViews;
    const scores = Float32Array.of(0.3, 0, 0.2, 0.2, 0.1);
    // Candidates 0, 10, 20: lowest score 0.2 at 10 and 20, ties to the later position (row 3).
    expect(Array.from(chooseEvicted(views, { data: scores, rows: 1 }, 4, 0, 2))).toEqual([3]);
    // With a sink of 1 (position 0) as well: the same.
    expect(Array.from(chooseEvicted(views, { data: scores, rows: 1 }, 4, 1, 2))).toEqual([3]);
    // NaN ranks lowest: row 0 (position 0) goes when it is not a sink.
    expect(Array.from(chooseEvicted(views, { data: Float32Array.of(Number.NaN, 0, 0.2, 0.2, 0.1), rows: 1 }, 4, 0, 2))).toEqual([0]);
  });
});

describe('in-place layout, by hand', () => {
  it('moves the newest row over the evicted one, leaves a spare last row, and refills it on append', async () => {
    const k = reference;
    // One head, 4 slots at positions 0..3, headDim 1: keys = values = position.
    const layer = layerFromHost(k, {
      keys: hostTensor('float32', [1, 4, 1], [0, 1, 2, 3]),
      values: hostTensor('float32', [1, 4, 1], [0, 1, 2, 3]),
      positions: hostTensor('int32', [1, 4], [0, 1, 2, 3]),
      counts: hostTensor('int32', [1, 4], [1, 1, 1, 1]),
      scores: hostTensor('float32', [1, 4], [5, 1, 4, 0]),
    });
    // H2O, budget 3, recent 1: slot 3 is protected; of 0..2 the lowest score (slot 1) goes.
    const out = await new H2OPolicy({ recent: 1 }).step(layer, { attention: k.fromHost(hostTensor('float32', [1, 4], [0, 0, 0, 0])) }, createContext({ kernels: k, budget: 3, promptLength: 3, step: 1, inPlace: true }));
    const h = await layerToHost(k, out);
    expect(Array.from(h.positions.data)).toEqual([0, 3, 2, SPARE_POSITION]);
    expect(Array.from(h.counts.data)).toEqual([1, 1, 1, 0]);
    expect(Array.from(h.values.data)).toEqual([0, 3, 2, 0]);
    expect(Array.from((await ordered(k, out)).positions.data)).toEqual([0, 2, 3]);
    expect(appendInPlace(k, out, k.fromHost(hostTensor('float32', [1, 1, 1], [9])), k.fromHost(hostTensor('float32', [1, 1, 1], [9])), Int32Array.of(4))).toBe(true);
    expect(Array.from((await layerToHost(k, out)).positions.data)).toEqual([0, 3, 2, 4]);
  });
  it('CaM merges the evicted value into its successors by position, not by row', async () => {
    const k = reference;
    // Rows out of position order (an earlier in-place step put position 9 in row 1).
    const layer = layerFromHost(k, {
      keys: hostTensor('float32', [1, 5, 1], [0, 0, 0, 0, 0]),
      values: hostTensor('float32', [1, 5, 1], [1, 10, 2, 3, 20]),
      positions: hostTensor('int32', [1, 5], [0, 9, 2, 3, 10]),
      counts: hostTensor('int32', [1, 5], [1, 1, 1, 1, 1]),
      scores: hostTensor('float32', [1, 5], [9, 9, 0.5, 9, 9]),
    });
    // Budget 4, recent 2 (positions 9 and 10): position 2 (row 2) is the lowest; its successors by position
    // are 3 and 9 (mergeBudget 2). Expected gate: probability 0.5 / 9 < 1, so use `expected`.
    const out = await new CaMPolicy({ recent: 2, mergeBudget: 2, gate: 'expected' }).step(layer, { attention: k.fromHost(hostTensor('float32', [1, 5], [0, 0, 0, 0, 0])) }, createContext({ kernels: k, budget: 4, promptLength: 4, step: 1, inPlace: true }));
    const h = await layerToHost(k, out);
    const g = Math.fround(0.5 / 9) / 2;
    expect(Array.from(h.positions.data)).toEqual([0, 9, 10, 3, SPARE_POSITION]);
    expect(Array.from(h.values.data)).toEqual([1, Math.fround(10 + g * 2), 20, Math.fround(3 + g * 2), 0]);
  });
  it('refuses an evicted slot outside the cache with a typed error', () => {
    const k = reference;
    const layer = layerFromHost(k, randomLayer(2, 3, 2, mulberry32(1)));
    expect(() => evictInPlace(layerViews(k, layer)!, Int32Array.of(0))).toThrow(/2 heads/);
    expect(() => evictInPlace(layerViews(k, layer)!, Int32Array.of(0, 3))).toThrow(/outside 0\.\.2/);
  });
});

describe('cache manager: in-place decoding equals functional decoding', () => {
  for (const [name, k] of backends) {
    it(`${name}: H2O and CaM through append, observe and compress`, async () => {
      for (const make of [() => new H2OPolicy({ recent: 3 }), () => new CaMPolicy({ recent: 0.25, mergeBudget: 3 })]) {
        const run = async (inPlace: boolean) => {
          const H = 2;
          const D = 4;
          const m = new CacheManager({ kernels: k, layers: 1, kvHeads: H, headDim: D, policy: make(), budget: { tokens: 8 }, inPlace, seed: 3 });
          const r = mulberry32(5);
          const feed = async (n: number) => {
            const positions = Int32Array.from(m.reserve(n));
            const kv = () => k.fromHost(hostTensor('float32', [H, n, D], Float32Array.from({ length: H * n * D }, () => r() * 4 - 2)));
            const keys = kv();
            const values = kv();
            m.append(0, keys, values, positions);
            m.record(0, { queries: k.fromHost(hostTensor('float32', [H, n, D], Float32Array.from({ length: H * n * D }, () => r() * 4 - 2))) });
            await m.compress();
          };
          await feed(12);
          for (let i = 0; i < 10; i++) await feed(1);
          await feed(3);
          for (let i = 0; i < 4; i++) await feed(1);
          expect(m.lengths()).toEqual([8]);
          const snap = await m.snapshot();
          m.dispose();
          return snap[0]!;
        };
        expectLayerClose(await run(true), await run(false), `${name} manager`);
      }
    });
  }
});

describe('who may run in place, and what the guard accepts', () => {
  const cache = (k: KVKernels<unknown>, positions: number[]) => layerFromHost(k, positionsLayer(positions));
  const attention = (k: KVKernels<unknown>, n: number) => k.fromHost(hostTensor('float32', [1, n], new Float32Array(n)));
  const ctx = (k: KVKernels<unknown>, inPlace: boolean) => createContext({ kernels: k, budget: 3, promptLength: 3, step: 1, inPlace });

  it('tfjs edits in place through views of its wasm heap, and never a tensor that shares its memory', async () => {
    const k = backends.find(([n]) => n === 'tfjs')![1];
    // Its views move when the heap grows: it offers editView, not the long-lived hostView.
    expect(k.hostView).toBeUndefined();
    const own = cache(k, [0, 1, 2, 3]);
    const out = await new H2OPolicy({ recent: 1 }).step(own, { attention: attention(k, 4) }, ctx(k, true));
    // In place: the same tensors; the lowest score (position 0) replaced by the newest row, a spare last row.
    expect(out.keys).toBe(own.keys);
    expect(Array.from((await k.toHost(out.positions)).data)).toEqual([3, 1, 2, SPARE_POSITION]);
    disposeLayer(k, out);
    // A cache that shares memory with another tensor stays functional: packages/backend-tfjs/test/backend.test.ts.
  });
  it('without ctx.inPlace a writable backend never edits its input', async () => {
    const k = reference as KVKernels<unknown>;
    const layer = cache(k, [0, 1, 2, 3]);
    const out = await new CaMPolicy({ recent: 1 }).step(layer, { attention: attention(k, 4) }, ctx(k, false));
    expect(k.shapeOf(out.keys)).toEqual([1, 3, 1]);
    expect(Array.from((await k.toHost(layer.values)).data)).toEqual([0, 1, 2, 3]);
  });
  it('the guard accepts an in-place cache only under ctx.inPlace, and refuses repeated positions with a typed error', async () => {
    const k = reference as KVKernels<unknown>;
    const guarded = guardPolicy(new H2OPolicy({ recent: 1 }));
    await expect(guarded.step(cache(k, [0, 3, 2, 4]), { attention: attention(k, 4) }, ctx(k, false))).rejects.toMatchObject({ code: ErrorCode.Shape, details: { field: 'positions' } });
    const out = await guarded.step(cache(k, [0, 3, 2, 4]), { attention: attention(k, 4) }, ctx(k, true));
    expect(Array.from((await ordered(k, out)).positions.data)).toEqual([2, 3, 4]);
    await expect(guarded.step(cache(k, [0, 3, 3, 4]), { attention: attention(k, 4) }, ctx(k, true))).rejects.toThrow(/position 3 appears twice in head 0/);
  });
  it('the cache manager counts live slots, and stops editing in place once a model replaces its caches', async () => {
    const k = reference as KVKernels<unknown>;
    const m = new CacheManager({ kernels: k, layers: 1, kvHeads: 1, headDim: 1, policy: new H2OPolicy({ recent: 1 }), budget: { tokens: 3 }, guard: false });
    const feed = async (n: number) => {
      const positions = Int32Array.from(m.reserve(n));
      const kv = () => k.fromHost(hostTensor('float32', [1, n, 1], Array.from(positions, (p) => p)));
      m.append(0, kv(), kv(), positions);
      m.record(0, { queries: k.fromHost(hostTensor('float32', [1, n, 1], new Float32Array(n).fill(1))) });
      await m.compress();
    };
    await feed(3);
    await feed(1);
    // 4 rows, the last spare: 3 slots, 4 rows of bytes.
    expect(k.shapeOf(m.layer(0)!.keys)).toEqual([1, 4, 1]);
    expect(m.lengths()).toEqual([3]);
    expect(m.bytes()).toBe(4 * (2 * 4 + 3 * 4));
    m.replace(0, compactLayer(k, m.layer(0)!));
    await feed(1);
    expect(k.shapeOf(m.layer(0)!.keys)).toEqual([1, 3, 1]);
    m.dispose();
  });
});
