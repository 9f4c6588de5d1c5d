import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, HostScratch, KVFold, createContext, createRng, disposeLayer, hostLayer, hostTensor, layerToHost, rows, type HostTensor, type KVKernels, type LayerCache, type Rng } from '@kvfold/core';
import plugin, { CaMPolicy, camPolicy, planNeighbourMerge, type KeepChooser } from '@kvfold/policy-cam';
import { attention, leaked, ramp, snapshot, trackedKernels, upload, type TrackedKernels } from '@kvfold/testkit';

const ctxFor = (k: KVKernels<HostTensor>, budget: number, promptLength: number, step = 0, seed = 0) => createContext({ kernels: k, budget, promptLength, step, seed });

/** One head of `length` tokens, head dim 2, value of slot j = [j + 1, 10 (j + 1)]. */
function valueLayer(k: TrackedKernels, length: number): LayerCache<HostTensor> {
  const values = Array.from({ length: length * 2 }, (_, i) => (i % 2 === 0 ? 1 : 10) * (Math.floor(i / 2) + 1));
  return upload(k, hostLayer({ heads: 1, length, headDim: 2, keys: ramp(length * 2), values }));
}

const valuesOf = async (k: KVKernels<HostTensor>, l: LayerCache<HostTensor>) => Array.from((await k.toHost(l.values)).data);
const positionsOf = async (k: KVKernels<HostTensor>, l: LayerCache<HostTensor>) => rows(await k.toHost(l.positions));

function expectClose(actual: number[], expected: number[]): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((v, i) => expect(Math.abs(v - expected[i])).toBeLessThan(1e-6));
}

describe('cam: hand-computed merges', () => {
  it('window eviction (sink 1, m 2): a prominent evicted value is spread over its 2 kept successors, a zero-attention one is not', async () => {
    const k = trackedKernels();
    const layer = valueLayer(k, 6);
    // keep [0, 3, 4, 5]; slot 1: A=2 over mean(A3, A4)=1 -> p=1; slot 2: A=0 -> p=0
    const att = attention(k, [[1, 2, 0, 1, 1, 5]]);
    const out = await new CaMPolicy({ evict: 'window', sink: 1, mergeBudget: 2 }).prefill(layer, { attention: att }, ctxFor(k, 4, 6, 0, 123));
    const host = await layerToHost(k, out);
    expect(rows(host.positions)).toEqual([[0, 3, 4, 5]]);
    expectClose(Array.from(host.values.data), [1, 10, 4 + 1, 40 + 10, 5 + 1, 50 + 10, 6, 60]);
    const inKeys = (await k.toHost(layer.keys)).data;
    expect(Array.from(host.keys.data)).toEqual([0, 3, 4, 5].flatMap((j) => [inKeys[j * 2], inKeys[j * 2 + 1]]));
    expect(Array.from(host.counts.data)).toEqual([1, 1, 1, 1]);
    expectClose(Array.from(host.scores.data), [1, 1, 1, 5]);
    expect(leaked(k, [layer, att, out])).toBe(0);
  });

  it('h2o eviction: fewer than m successors share the value among those that exist', async () => {
    const k = trackedKernels();
    const layer = valueLayer(k, 6);
    // recent 1, heavy 3 of slots 0..4 by A -> keep [0, 1, 3, 5]; slot 2 (A=0) p=0; slot 4 targets slot 5 only, p=clamp(2/1)=1
    const att = attention(k, [[5, 4, 0, 3, 2, 1]]);
    const out = await new CaMPolicy({ recent: 1, mergeBudget: 2 }).prefill(layer, { attention: att }, ctxFor(k, 4, 6, 0, 7));
    expect(await positionsOf(k, out)).toEqual([[0, 1, 3, 5]]);
    expectClose(await valuesOf(k, out), [1, 10, 2, 20, 4, 40, 6 + 5, 60 + 50]);
    expect(leaked(k, [layer, att, out])).toBe(0);
  });

  it("gate 'expected' weights each merge by its probability", async () => {
    const k = trackedKernels();
    const layer = valueLayer(k, 6);
    // keep [0, 1, 3, 5]; slot 2: p = 0.5 / mean(3, 1) = 0.25 over slots 3 and 5; slot 4: p = 1 into slot 5
    const att = attention(k, [[5, 4, 0.5, 3, 2, 1]]);
    const out = await new CaMPolicy({ recent: 1, mergeBudget: 2, gate: 'expected' }).prefill(layer, { attention: att }, ctxFor(k, 4, 6));
    const d = 0.25 / 2;
    expectClose(await valuesOf(k, out), [1, 10, 2, 20, 4 + 3 * d, 40 + 30 * d, 6 + 3 * d + 5, 60 + 30 * d + 50]);
  });

  it('a decode step over budget merges the leaving token and evicts back to the budget', async () => {
    const k = trackedKernels();
    const policy = new CaMPolicy({ evict: 'window', sink: 1, mergeBudget: 2 });
    const layer = valueLayer(k, 6);
    const att0 = attention(k, [[1, 2, 0, 1, 1, 5]]);
    const pre = await policy.prefill(layer, { attention: att0 }, ctxFor(k, 4, 6));
    // pre: positions [0, 3, 4, 5], values [1,10] [5,50] [6,60] [6,60], scores [1, 1, 1, 5]
    const kv = (v: number[]) => k.fromHost(hostTensor('float32', [1, 1, 2], v));
    const [nk, nv, np] = [kv([0.5, 0.5]), kv([7, 70]), k.fromHost(hostTensor('int32', [1, 1], [6]))];
    const grown = k.append(pre, nk, nv, np);
    k.dispose(nk, nv, np);
    // scores -> [1, 4, 2, 6, 1]; evict slot 1 (position 3): p = 4 / mean(2, 6) = 1 -> +[2.5, 25] to positions 4 and 5
    const att1 = attention(k, [[0, 3, 1, 1, 1]]);
    const out = await policy.step(grown, { attention: att1 }, ctxFor(k, 4, 6, 1));
    expect(await positionsOf(k, out)).toEqual([[0, 4, 5, 6]]);
    expectClose(await valuesOf(k, out), [1, 10, 8.5, 85, 8.5, 85, 7, 70]);
    expectClose(Array.from((await k.toHost(out.scores)).data), [1, 2, 6, 1]);
    expect(leaked(k, [layer, att0, pre, grown, att1, out])).toBe(0);
  });

  it('under budget it returns the same keys and values with updated scores', async () => {
    const k = trackedKernels();
    const layer = valueLayer(k, 3);
    const att = attention(k, [[0.25, 0.5, 0.25]]);
    const out = await new CaMPolicy().step(layer, { attention: att }, ctxFor(k, 4, 3, 1));
    expect(out.keys).toBe(layer.keys);
    expect(out.values).toBe(layer.values);
    expect(Array.from((await k.toHost(out.scores)).data)).toEqual([0.25, 0.5, 0.25]);
  });
});

describe('cam: custom chooser', () => {
  it('merges around whatever slots a KeepChooser keeps', async () => {
    const k = trackedKernels();
    const layer = valueLayer(k, 6);
    const evenSlots: KeepChooser = ({ budget }) => [Array.from({ length: budget }, (_, j) => 4 - 2 * j)]; // [4, 2, 0], unsorted on purpose
    // all A equal -> p = 1; slot 1 -> slots 2, 4; slot 3 -> slot 4; slot 5 has no successor
    const att = attention(k, [[1, 1, 1, 1, 1, 1]]);
    const out = await new CaMPolicy({ mergeBudget: 2 }, evenSlots).prefill(layer, { attention: att }, ctxFor(k, 3, 6));
    expect(await positionsOf(k, out)).toEqual([[0, 2, 4]]);
    expectClose(await valuesOf(k, out), [1, 10, 3 + 1, 30 + 10, 5 + 1 + 4, 50 + 10 + 40]);
    expect(leaked(k, [layer, att, out])).toBe(0);
  });

  it('refuses a chooser answer of the wrong size or with repeated or out-of-range slots, without leaking', async () => {
    const k = trackedKernels();
    const layer = valueLayer(k, 6);
    const att = attention(k, [[1, 1, 1, 1, 1, 1]]);
    for (const bad of [[[0, 1]], [[0, 0, 1]], [[0, 1, 6]], [[0, 1.5, 2]], [[0, 1, 2], [0, 1, 2]]]) {
      const chooser: KeepChooser = () => bad;
      await expect(new CaMPolicy({}, chooser).prefill(layer, { attention: att }, ctxFor(k, 3, 6))).rejects.toMatchObject({ code: ErrorCode.Shape, details: expect.objectContaining({ field: 'keep' }) });
    }
    expect(leaked(k, [layer, att])).toBe(0);
  });
});

/** An Rng that replays a script and counts draws. */
function scripted(values: number[]): Rng & { draws: number } {
  const r = {
    draws: 0,
    next() {
      return values[r.draws++ % values.length];
    },
    int(n: number) {
      return Math.floor(r.next() * n);
    },
    fork() {
      return r;
    },
  };
  return r;
}

describe('cam: merge plan', () => {
  it('zero means and NaN scores follow the documented gate rules', () => {
    const rng = scripted([0.999]);
    // keep slots 2, 3 (A = 0, NaN -> 0): source 0 (A=0) -> p 0; source 1 (A=3) -> p 1
    const p = planNeighbourMerge(Int32Array.from([2, 3]), [[0, 3, 0, NaN]], 2, 'bernoulli', rng);
    expect(Array.from(p.source)).toEqual([0, 1]);
    expect(Array.from(p.probability)).toEqual([0, 1]);
    expect(Array.from(p.targetStart)).toEqual([0, 0]);
    expect(Array.from(p.targetCount)).toEqual([2, 2]);
    expect(Array.from(p.gate)).toEqual([0, 1]);
    // a NaN source counts as 0; an infinite one clamps to 1
    const q = planNeighbourMerge(Int32Array.from([2, 3]), [[NaN, Infinity, 1, 1]], 2, 'expected', rng);
    expect(Array.from(q.probability)).toEqual([0, 1]);
  });

  it('a gate fires only when its draw is below p: a draw equal to p, or p = 0 with a draw of 0, does not fire', () => {
    // m = 1, keep slot 2 (A = 2): source 0 (A = 1) has p = 1/2, source 1 (A = 0) has p = 0.
    const p = planNeighbourMerge(Int32Array.from([2]), [[1, 0, 2]], 1, 'bernoulli', scripted([0.5, 0]));
    expect(Array.from(p.probability)).toEqual([0.5, 0]);
    expect(Array.from(p.gate)).toEqual([0, 0]);
    expect(p.open).toBe(0);
    const q = planNeighbourMerge(Int32Array.from([2]), [[1, 0, 2]], 1, 'bernoulli', scripted([0.4999999999999999, 0]));
    expect(Array.from(q.gate)).toEqual([1, 0]);
    expect(q.open).toBe(1);
  });

  it('with fewer than m successors the reference is the mean over the targets that exist', () => {
    // m = 4 but source 1 has a single kept successor (slot 2, A = 4): p = 1 / 4
    const p = planNeighbourMerge(Int32Array.from([0, 2]), [[9, 1, 4]], 4, 'expected', scripted([0.5]));
    expect(Array.from(p.targetStart)).toEqual([1]);
    expect(Array.from(p.targetCount)).toEqual([1]);
    expect(Array.from(p.probability)).toEqual([0.25]);
    expect(Array.from(p.gate)).toEqual([0.25]);
  });

  it('draws once per source with targets, head-major then source ascending', () => {
    const rng = scripted([0.1, 0.9, 0.6, 0.2]);
    // m = 1. head 0 keeps slots 0, 3: sources 1 and 2 target slot 3 (A = 2) with p = 1/2, source 4 has no successor.
    // head 1 keeps slots 1, 3: source 0 targets slot 1, source 2 slot 3 (A = 2 each), p = 1/2; source 4 has none.
    const keep = Int32Array.from([0, 3, 1, 3]);
    const scores = [
      [1, 1, 1, 2, 1],
      [1, 2, 1, 2, 9],
    ];
    const p = planNeighbourMerge(keep, scores, 1, 'bernoulli', rng);
    expect(Array.from(p.source)).toEqual([1, 2, 4, 0, 2, 4]);
    expect(Array.from(p.targetCount)).toEqual([1, 1, 0, 1, 1, 0]);
    expect(Array.from(p.targetStart)).toEqual([1, 1, 0, 0, 1, 0]);
    expect(Array.from(p.probability)).toEqual([0.5, 0.5, 0, 0.5, 0.5, 0]);
    expect(rng.draws).toBe(4);
    // draws 0.1, 0.9 go to head 0's sources 1, 2; 0.6, 0.2 to head 1's sources 0, 2
    expect(Array.from(p.gate)).toEqual([1, 0, 0, 0, 1, 0]);
  });

  it('reused scratch arrays give the fresh arrays\' plan, whatever the previous call left in them', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 2, max: 24 }), fc.integer({ min: 1, max: 6 }), fc.constantFrom('bernoulli' as const, 'expected' as const), fc.integer({ min: 0, max: 1_000_000 }), (H, L, m, gate, seed) => {
        const scratch = new HostScratch();
        const r = createRng(seed);
        const kept = 1 + Math.floor(r.next() * (L - 1));
        // Three plans of the same size into the same scratch arrays; each must equal the plan into fresh arrays.
        for (let call = 0; call < 3; call++) {
          const keep = new Int32Array(H * kept);
          for (let h = 0; h < H; h++) {
            const slots = Array.from({ length: L }, (_, i) => i).sort(() => r.next() - 0.5).slice(0, kept).sort((a, b) => a - b);
            keep.set(slots, h * kept);
          }
          const scores = Array.from({ length: H }, () => Array.from({ length: L }, () => (r.next() < 0.1 ? NaN : r.next())));
          const fresh = planNeighbourMerge(keep, scores, m, gate, createRng(call));
          const reused = planNeighbourMerge(keep, scores, m, gate, createRng(call), scratch);
          for (const f of ['keep', 'source', 'targetStart', 'targetCount', 'gate', 'probability'] as const) expect(Array.from(reused[f]), f).toEqual(Array.from(fresh[f]));
        }
      }),
      { numRuns: 200, seed: 5 },
    );
  });

  it('equals the slot-by-slot definition on random plans (sources, targets, probabilities, gates, draws)', () => {
    /** The plan walked slot by slot, as the rule is stated: an oracle independent of the kernel's passes. */
    const oracle = (keep: Int32Array, scores: number[][], m: number, gate: 'bernoulli' | 'expected', rng: { next(): number }) => {
      const H = scores.length, L = scores[0]!.length, K = keep.length / H;
      const o = { source: [] as number[], targetStart: [] as number[], targetCount: [] as number[], probability: [] as number[], gate: [] as number[], open: 0 };
      const score = (x: number) => (Number.isNaN(x) ? 0 : x);
      for (let h = 0; h < H; h++) {
        const kept = Array.from(keep.subarray(h * K, (h + 1) * K));
        for (let i = 0; i < L; i++) {
          if (kept.includes(i)) continue;
          const first = kept.findIndex((j) => j > i);
          const targets = first < 0 ? [] : kept.slice(first, first + m);
          o.source.push(i);
          if (targets.length === 0) {
            o.targetStart.push(0);
            o.targetCount.push(0);
            o.probability.push(0);
            o.gate.push(0);
            continue;
          }
          let sum = 0;
          for (const j of targets) sum += score(scores[h]![j]!);
          const mean = sum / targets.length;
          const ai = score(scores[h]![i]!);
          let p = mean === 0 ? (ai > 0 ? 1 : 0) : ai / mean;
          p = Number.isNaN(p) ? 0 : Math.min(1, Math.max(0, p));
          const w = gate === 'expected' ? p : rng.next() < p ? 1 : 0;
          o.targetStart.push(first);
          o.targetCount.push(targets.length);
          o.probability.push(Math.fround(p));
          o.gate.push(Math.fround(w));
          if (w > 0) o.open++;
        }
      }
      return o;
    };
    const value = fc.oneof(fc.double({ min: 0, max: 4, noNaN: true }), fc.constantFrom(0, NaN, Infinity, -1, 1e-300));
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.constantFrom('bernoulli' as const, 'expected' as const),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.array(value, { minLength: 120, maxLength: 120 }),
        (H, L, m, gate, seed, pool) => {
          const r = createRng(seed);
          const kept = Math.floor(r.next() * (L + 1));
          const keep = new Int32Array(H * kept);
          for (let h = 0; h < H; h++) {
            const slots = Array.from({ length: L }, (_, i) => i).sort(() => r.next() - 0.5).slice(0, kept).sort((a, b) => a - b);
            keep.set(slots, h * kept);
          }
          const scores = Array.from({ length: H }, () => Array.from({ length: L }, () => pool[Math.floor(r.next() * pool.length)]!));
          const want = oracle(keep, scores, m, gate, createRng(seed + 1));
          const got = planNeighbourMerge(keep, scores, m, gate, createRng(seed + 1), new HostScratch());
          for (const f of ['source', 'targetStart', 'targetCount', 'probability', 'gate'] as const) expect(Array.from(got[f]), f).toEqual(want[f]);
          expect(got.open).toBe(want.open);
          expect(Array.from(got.keep)).toEqual(Array.from(keep));
        },
      ),
      { numRuns: 400, seed: 11 },
    );
  });

  it('sums each window in slot order (cancellation makes the order visible)', () => {
    // Targets 1e16, -1e16, 1 in slot order sum to 1 (mean 1/3, p = 0.3); summed from the other end they give 0
    // and p would be 1. Nine windows reach both summation loops (eight at a time, then one by one).
    const row = [0.1, 1e16, -1e16, 1];
    const p = planNeighbourMerge(Int32Array.from([1, 2, 3]), [row], 3, 'expected', createRng(0));
    expect(Array.from(p.probability)).toEqual([Math.fround(0.1 / (1 / 3))]);
    const long = [0.1, 1e16, -1e16, 1, 0.1, 1e16, -1e16, 1, 0.1, 1e16, -1e16, 1, 0.1, 1e16, -1e16, 1, 0.1, 1e16, -1e16, 1, 0.1, 1e16, -1e16, 1, 0.1, 1e16, -1e16, 1, 0.1, 1e16, -1e16, 1, 0.1, 1e16, -1e16, 1];
    const keep = Int32Array.from(long.flatMap((_, i) => (i % 4 === 0 ? [] : [i])));
    const q = planNeighbourMerge(keep, [long], 3, 'expected', createRng(0));
    expect(Array.from(q.probability)).toEqual(Array.from({ length: 9 }, () => Math.fround(0.1 / (1 / 3))));
  });

  it('the Bernoulli gate fires with the stated probability', () => {
    let fired = 0;
    const n = 4000;
    for (let seed = 0; seed < n; seed++) {
      // p = 0.5 / mean(1, 3) = 0.25
      const p = planNeighbourMerge(Int32Array.from([1, 2]), [[0.5, 1, 3]], 2, 'bernoulli', createRng(seed));
      fired += p.gate[0];
    }
    expect(fired / n).toBeGreaterThan(0.22);
    expect(fired / n).toBeLessThan(0.28);
  });
});

describe('cam: errors and registration', () => {
  it('refuses a call without attention and bad options with typed errors', async () => {
    const k = trackedKernels();
    const layer = valueLayer(k, 4);
    await expect(new CaMPolicy().prefill(layer, {}, ctxFor(k, 2, 4))).rejects.toMatchObject({ code: ErrorCode.MissingObservation });
    expect(() => new CaMPolicy({ mergeBudget: 0 })).toThrow(/mergeBudget/);
    expect(() => new CaMPolicy({ gate: 'max' as never })).toThrow(expect.objectContaining({ code: ErrorCode.Config }));
    expect(() => new CaMPolicy({ evict: 'tova' as never })).toThrow(/evict/);
    expect(new CaMPolicy().options).toEqual({ evict: 'h2o', recent: 0.5, sink: 4, mergeBudget: 32, gate: 'bernoulli', decode: 'evict' });
  });

  it('registers through the plugin', () => {
    const kv = KVFold.create({ plugins: [plugin] });
    expect(kv.policies.names()).toEqual(['cam']);
    expect(camPolicy.create({ evict: 'window', recent: 0.5, sink: 2, mergeBudget: 16, gate: 'expected', decode: 'evict' }).needs).toEqual(['attention']);
  });
});

/** H2O keep set (independent oracle) over float32 scores. */
function h2oKeep(s: number[][], budget: number, recent: number): number[][] {
  return s.map((row) => {
    const L = row.length;
    const older = Array.from({ length: L - recent }, (_, j) => j).sort((a, b) => row[b] - row[a] || a - b);
    return [...older.slice(0, budget - recent).sort((a, b) => a - b), ...Array.from({ length: recent }, (_, j) => L - recent + j)];
  });
}

describe('cam: properties', () => {
  const cases = fc
    .record({ heads: fc.integer({ min: 1, max: 3 }), length: fc.integer({ min: 1, max: 12 }), dim: fc.integer({ min: 1, max: 3 }), seed: fc.integer({ min: 0, max: 1000 }) })
    .chain((s) =>
      fc.record({
        s: fc.constant(s),
        budget: fc.integer({ min: 1, max: s.length }),
        evict: fc.constantFrom('h2o' as const, 'window' as const),
        recent: fc.oneof(fc.constantFrom(0, 0.5), fc.integer({ min: 1, max: 6 })),
        sink: fc.integer({ min: 0, max: 5 }),
        mergeBudget: fc.integer({ min: 1, max: 5 }),
        att: fc.array(fc.integer({ min: 0, max: 16 }), { minLength: s.heads * s.length, maxLength: s.heads * s.length }),
      }),
    );

  it('compresses to the budget, keeps the chooser set, leaves keys unmerged, is seeded-deterministic and never mutates its input', async () => {
    await fc.assert(
      fc.asyncProperty(cases, async ({ s, budget, evict, recent, sink, mergeBudget, att }) => {
        const k = trackedKernels();
        const layer = upload(k, hostLayer({ heads: s.heads, length: s.length, headDim: s.dim, keys: ramp(s.heads * s.length * s.dim, s.seed), values: ramp(s.heads * s.length * s.dim, s.seed + 3) }));
        const attRows = att.map((v) => v / 8);
        const a = attention(k, rows(hostTensor('float32', [s.heads, s.length], attRows)));
        const before = await snapshot(k, layer);
        const policy = new CaMPolicy({ evict, recent, sink, mergeBudget });
        const out1 = await policy.prefill(layer, { attention: a }, ctxFor(k, budget, s.length, 0, s.seed));
        const out2 = await policy.prefill(layer, { attention: a }, ctxFor(k, budget, s.length, 0, s.seed));
        expect(await snapshot(k, layer)).toEqual(before);
        expect(await snapshot(k, out2)).toEqual(await snapshot(k, out1));
        const host = await layerToHost(k, out1);
        const pos = rows(host.positions);
        const kept = Math.min(budget, s.length);
        const hostScores = rows(hostTensor('float32', [s.heads, s.length], attRows));
        if (s.length > budget) {
          const r = recent < 1 ? Math.round(recent * budget) : Math.min(budget, recent);
          const sk = Math.max(0, Math.min(sink, budget - 1));
          const window = [...Array.from({ length: sk }, (_, j) => j), ...Array.from({ length: budget - sk }, (_, j) => s.length - budget + sk + j)];
          expect(pos).toEqual(evict === 'h2o' ? h2oKeep(hostScores, budget, r) : hostScores.map(() => window));
        }
        const inKeys = before.keys;
        for (let h = 0; h < s.heads; h++) {
          expect(pos[h].length).toBe(kept);
          for (let j = 1; j < kept; j++) expect(pos[h][j]).toBeGreaterThan(pos[h][j - 1]);
          pos[h].forEach((p, j) => {
            for (let d = 0; d < s.dim; d++) expect(host.keys.data[(h * kept + j) * s.dim + d]).toBe(inKeys[(h * s.length + p) * s.dim + d]);
            expect(host.scores.data[h * kept + j]).toBe(Math.fround(hostScores[h][p]));
          });
        }
        expect(Array.from(host.counts.data).every((c) => c === 1)).toBe(true);
        expect(await k.allFinite(out1.values)).toBe(true);
        expect(leaked(k, [layer, a, out1, out2])).toBe(0);
      }),
      { numRuns: 40 },
    );
  });

  it('with equal attention every evicted value with a kept successor is merged whole (value mass is conserved)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ heads: fc.integer({ min: 1, max: 2 }), length: fc.integer({ min: 2, max: 10 }), dim: fc.integer({ min: 1, max: 3 }), seed: fc.integer({ min: 0, max: 99 }), mergeBudget: fc.integer({ min: 1, max: 4 }), recent: fc.constantFrom(0, 0.5, 1) }),
        fc.integer({ min: 1, max: 9 }),
        async ({ heads, length, dim, seed, mergeBudget, recent }, b) => {
          const budget = Math.min(b, length);
          const k = trackedKernels();
          const layer = upload(k, hostLayer({ heads, length, headDim: dim, keys: ramp(heads * length * dim, seed), values: ramp(heads * length * dim, seed + 1) }));
          const a = attention(k, Array.from({ length: heads }, () => new Array(length).fill(0.5)));
          const out = await new CaMPolicy({ recent, mergeBudget }).prefill(layer, { attention: a }, ctxFor(k, budget, length, 0, seed));
          const inV = (await k.toHost(layer.values)).data;
          const outV = (await k.toHost(out.values)).data;
          const pos = rows(await k.toHost(out.positions));
          const kept = pos[0].length;
          for (let h = 0; h < heads; h++) {
            const last = pos[h][kept - 1];
            for (let d = 0; d < dim; d++) {
              let want = 0;
              for (let j = 0; j <= last; j++) want += inV[(h * length + j) * dim + d]; // kept + merged evicted (those before the last kept slot)
              let got = 0;
              for (let j = 0; j < kept; j++) got += outV[(h * kept + j) * dim + d];
              expect(Math.abs(got - want)).toBeLessThan(1e-4);
            }
          }
          disposeLayer(k, out, layer);
          disposeLayer(k, layer);
          k.dispose(a);
          expect(k.live.size).toBe(0);
        },
      ),
      { numRuns: 30 },
    );
  });
});
