import {
  checkLayer,
  createContext,
  disposeLayer,
  layerFromHost,
  layerToHost,
  type HostLayer,
  type KVCachePolicy,
  type KVKernels,
  type LayerCache,
} from '@kvfold/core';
import { createReferenceKernels } from '@kvfold/backend-reference';
import { closeness, LAYER_FIELDS } from './compare.js';
import { syntheticLayer } from './synthetic.js';

/** What a policy promises, so one matrix can check policies with different contracts. */
export interface PolicyExpectations {
  /**
   * Slots left after prefill when the cache is longer than the budget: exactly the budget, at most the
   * budget, the full length (no-op policies), or anything (only the other invariants are checked).
   */
  readonly prefillLength: 'budget' | 'at-most-budget' | 'unchanged' | 'any';
  /** Slots a decode step may leave above the budget (`Infinity` for prefill-only policies). Default 0. */
  readonly decodeSlack?: number;
  /** The sum of counts per head equals the tokens seen (merging policies that never evict). */
  readonly conservesCounts?: boolean;
  /** The most recent `n` tokens are always kept verbatim (as a ratio of the budget when < 1). */
  readonly keepsRecent?: number;
}

/** One cache shape in the matrix. */
export interface MatrixCase {
  /** kv heads. */
  readonly heads: number;
  /** query heads (multiple of heads). */
  readonly queryHeads: number;
  /** prompt length. */
  readonly length: number;
  /** head dimension. */
  readonly headDim: number;
  /** budget as a ratio of the prompt. */
  readonly ratio: number;
  /** seed of data and policy. */
  readonly seed: number;
}

/** The default shapes: GQA and MHA, short and longer prompts, tight and loose budgets. */
export const defaultMatrix: readonly MatrixCase[] = [
  { heads: 1, queryHeads: 1, length: 12, headDim: 4, ratio: 0.5, seed: 1 },
  { heads: 2, queryHeads: 4, length: 40, headDim: 8, ratio: 0.35, seed: 2 },
  { heads: 4, queryHeads: 8, length: 96, headDim: 16, ratio: 0.2, seed: 3 },
  { heads: 3, queryHeads: 3, length: 64, headDim: 8, ratio: 0.5, seed: 4 },
];

function same(a: HostLayer, b: HostLayer): boolean {
  const fields = ['keys', 'values', 'positions', 'counts', 'scores'] as const;
  return fields.every((f) => a[f].shape.join() === b[f].shape.join() && a[f].data.every((x, i) => Object.is(x, b[f].data[i])));
}

/** Options of {@link checkPolicy}. */
export interface CheckOptions<T = unknown> {
  /** Kernels of the backend to run on; default the reference backend's. */
  readonly kernels?: KVKernels<T>;
  /**
   * On another backend than the reference: also run the policy on the reference kernels and report every
   * result that differs beyond 1e-5 relative (positions and counts exactly). Default true.
   */
  readonly parity?: boolean;
}

/** The observation of `queries` at `positions`, with the queries themselves (for policies that need them). */
function observe<T>(k: KVKernels<T>, layer: LayerCache<T>, queries: T, positions: T) {
  const o = k.observe(layer, queries, positions);
  return { ...o, queries, dispose: () => k.dispose(o.attention, o.lastAttention) };
}

/**
 * Run a policy through the shared invariants on a backend (the reference by default) and return every
 * violation found (empty = all hold). Checks: shapes and dtypes of the result, length against the budget,
 * positions strictly increasing and within the sequence, finite keys/values/scores, counts >= 1,
 * unmerged slots keep their original key exactly, recent tokens kept, counts conserved (if promised),
 * the input never mutated, determinism for a fixed seed, the decode-time bound over several steps, and
 * (on another backend) the same results as on the reference backend. `create` is called once per run so
 * stateful policies start fresh.
 */
export async function checkPolicy<T = unknown>(create: () => KVCachePolicy, expect: PolicyExpectations, cases: readonly MatrixCase[] = defaultMatrix, options: CheckOptions<T> = {}): Promise<string[]> {
  const k = (options.kernels ?? createReferenceKernels()) as KVKernels<T>;
  const problems: string[] = [];
  const parity = k.backend !== 'reference' && options.parity !== false;
  for (const c of cases) {
    const final = await runCase(k, create, c, expect, problems);
    if (!final || !parity) continue;
    const want = await runCase(createReferenceKernels(), create, c, expect, []);
    for (const f of LAYER_FIELDS) {
      const problem = want && closeness(final[f], want[f], `${tagOf(c)} ${k.backend} vs reference after prefill and 6 decode steps: ${f}`);
      if (problem) problems.push(problem);
    }
  }
  return problems;
}

function tagOf(c: MatrixCase): string {
  return `[H=${c.heads} Hq=${c.queryHeads} L=${c.length} d=${c.headDim} r=${c.ratio}]`;
}

/**
 * One case of the matrix on `k`: prefill twice (determinism, input untouched), then six decode steps of
 * one token each; appends every violation to `problems` and returns the final cache (undefined when the
 * prefill result is malformed).
 */
async function runCase<T>(k: KVKernels<T>, create: () => KVCachePolicy, c: MatrixCase, expect: PolicyExpectations, problems: string[]): Promise<HostLayer | undefined> {
  const tag = tagOf(c);
  const data = syntheticLayer({ heads: c.heads, queryHeads: c.queryHeads, length: c.length, headDim: c.headDim, seed: c.seed });
  const budget = Math.max(1, Math.round(c.ratio * c.length));
  const run = async () => {
    const policy = create();
    const layer = layerFromHost(k, data.layer);
    const q = k.fromHost(data.queries);
    const qp = k.fromHost(data.queryPositions);
    const obs = observe(k, layer, q, qp);
    const before = await layerToHost(k, layer);
    const ctx = createContext({ kernels: k, budget, promptLength: c.length, seed: c.seed });
    const out = await policy.prefill(layer, obs, ctx);
    const after = await layerToHost(k, layer);
    if (!same(before, after)) problems.push(`${tag} prefill mutated its input`);
    obs.dispose();
    k.dispose(q, qp);
    return { policy, out, host: await layerToHost(k, out) };
  };
  const first = await run();
  const second = await run();
  if (!same(first.host, second.host)) problems.push(`${tag} not deterministic for a fixed seed`);
  disposeLayer(k, second.out, first.out);
  try {
    checkLayer(k, first.out, 'result');
  } catch (e) {
    problems.push(`${tag} ${(e as Error).message}`);
    return undefined;
  }
  problems.push(...checkSlots(first.host, data.layer, c.length, tag, expect, budget, 'prefill'));

  // Decode: append one token at a time, observe it, call step.
  let layer = first.out;
  const [heads, , headDim] = data.layer.keys.shape as [number, number, number];
  const qh = c.queryHeads;
  const extra = syntheticLayer({ heads, queryHeads: qh, length: 6, headDim, seed: c.seed + 1000, queries: 6 });
  const slack = expect.decodeSlack ?? 0;
  let host = first.host;
  for (let s = 0; s < 6; s++) {
    const pos = c.length + s;
    const slice = (t: Float32Array, rowsN: number, rowLen: number, idx: number) => {
      const o = new Float32Array(rowsN * rowLen);
      for (let r = 0; r < rowsN; r++) o.set(t.subarray((r * 6 + idx) * rowLen, (r * 6 + idx + 1) * rowLen), r * rowLen);
      return o;
    };
    const nk = k.fromHost({ dtype: 'float32', shape: [heads, 1, headDim], data: slice(extra.layer.keys.data, heads, headDim, s) });
    const nv = k.fromHost({ dtype: 'float32', shape: [heads, 1, headDim], data: slice(extra.layer.values.data, heads, headDim, s) });
    const np = k.fromHost({ dtype: 'int32', shape: [heads, 1], data: new Int32Array(heads).fill(pos) });
    const grown = k.append(layer, nk, nv, np);
    k.dispose(nk, nv, np);
    disposeLayer(k, layer, grown);
    const q = k.fromHost({ dtype: 'float32', shape: [qh, 1, headDim], data: slice(extra.queries.data, qh, headDim, s) });
    const qp = k.fromHost({ dtype: 'int32', shape: [1], data: Int32Array.of(pos) });
    const obs = observe(k, grown, q, qp);
    const ctx = createContext({ kernels: k, budget, promptLength: c.length, step: s + 1, seed: c.seed });
    const next = await first.policy.step(grown, obs, ctx);
    obs.dispose();
    k.dispose(q, qp);
    const [, len] = k.shapeOf(next.keys) as [number, number];
    if (len > budget + slack) problems.push(`${tag} decode step ${s + 1}: ${len} slots exceed budget ${budget} + slack ${slack}`);
    host = await layerToHost(k, next);
    for (let h = 0; h < heads; h++) {
      const p = host.positions.data.subarray(h * len, (h + 1) * len);
      if (p[len - 1] !== pos) problems.push(`${tag} decode step ${s + 1}: head ${h} dropped the newest token`);
      for (let i = 1; i < len; i++) if (p[i]! <= p[i - 1]!) { problems.push(`${tag} decode step ${s + 1}: positions not increasing on head ${h}`); break; }
    }
    disposeLayer(k, grown, next);
    layer = next;
  }
  disposeLayer(k, layer);
  return host;
}

function checkSlots(out: HostLayer, input: HostLayer, seen: number, tag: string, expect: PolicyExpectations, budget: number, phase: string): string[] {
  const problems: string[] = [];
  const [heads, len, d] = out.keys.shape as [number, number, number];
  const want = expect.prefillLength;
  if (want === 'budget' && len !== budget) problems.push(`${tag} ${phase}: ${len} slots, expected exactly the budget ${budget}`);
  if (want === 'at-most-budget' && len > budget) problems.push(`${tag} ${phase}: ${len} slots exceed the budget ${budget}`);
  if (want === 'unchanged' && len !== seen) problems.push(`${tag} ${phase}: ${len} slots, expected all ${seen}`);
  const finite = (a: ArrayLike<number>) => Array.prototype.every.call(a, (x: number) => Number.isFinite(x));
  if (!finite(out.keys.data) || !finite(out.values.data) || !finite(out.scores.data)) problems.push(`${tag} ${phase}: non-finite keys, values or scores`);
  const inLen = input.keys.shape[1]!;
  const recent = expect.keepsRecent === undefined ? 0 : expect.keepsRecent < 1 ? Math.round(expect.keepsRecent * budget) : expect.keepsRecent;
  for (let h = 0; h < heads; h++) {
    let countSum = 0;
    const kept = new Set<number>();
    for (let i = 0; i < len; i++) {
      const p = out.positions.data[h * len + i]!;
      const c = out.counts.data[h * len + i]!;
      countSum += c;
      kept.add(p);
      if (p < 0 || p >= seen) problems.push(`${tag} ${phase}: head ${h} slot ${i} position ${p} outside [0, ${seen})`);
      if (i > 0 && p <= out.positions.data[h * len + i - 1]!) problems.push(`${tag} ${phase}: head ${h} positions not strictly increasing at slot ${i}`);
      if (c < 1) problems.push(`${tag} ${phase}: head ${h} slot ${i} count ${c} < 1`);
      if (c === 1 && p >= 0 && p < inLen) {
        for (let j = 0; j < d; j++) {
          if (out.keys.data[(h * len + i) * d + j] !== input.keys.data[(h * inLen + p) * d + j]) {
            problems.push(`${tag} ${phase}: head ${h} unmerged slot at position ${p} changed its key`);
            break;
          }
        }
      }
    }
    if (expect.conservesCounts && countSum !== seen) problems.push(`${tag} ${phase}: head ${h} counts sum to ${countSum}, expected ${seen}`);
    for (let p = seen - recent; p < seen; p++) if (!kept.has(p)) { problems.push(`${tag} ${phase}: head ${h} lost recent token ${p}`); break; }
  }
  return problems;
}
