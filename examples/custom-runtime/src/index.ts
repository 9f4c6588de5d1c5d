/**
 * @packageDocumentation
 * kvfold custom-runtime example: a hand-written single-layer attention decoder in plain TypeScript, with
 * no kvfold runtime, that calls a kvfold policy after the prompt and after every decoded token. It shows
 * everything a runtime author provides: the cache in kvfold's layout (post-RoPE keys at their true
 * positions), the observations (attention reduced to kv heads), the policy context, and cache ownership.
 */
import {
  KVFold,
  createContext,
  createRng,
  disposeLayer,
  hostLayer,
  hostTensor,
  layerFromHost,
  layerTensors,
  layerToHost,
  resolveBudget,
  type HostLayer,
  type KVCachePolicy,
  type KVKernels,
  type LayerCache,
  type Observation,
  type PolicyContext,
} from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import baselines from '@kvfold/policy-baselines';
import h2o from '@kvfold/policy-h2o';
import cam from '@kvfold/policy-cam';
import kvmerger from '@kvfold/policy-kvmerger';

/** Dimensions of the toy decoder. */
export interface ToyShape {
  /** Vocabulary size. */
  readonly vocab: number;
  /** Hidden size. */
  readonly hidden: number;
  /** Query heads. */
  readonly queryHeads: number;
  /** Key/value heads (GQA when fewer than the query heads). */
  readonly kvHeads: number;
  /** Head dimension (even, for RoPE). */
  readonly headDim: number;
}

/** The default toy: 4 query heads sharing 2 kv heads (GQA), head dim 16. */
export const toyShape: ToyShape = { vocab: 64, hidden: 32, queryHeads: 4, kvHeads: 2, headDim: 16 };

/** Seeded random weights of the toy decoder (row-major matrices). */
interface ToyWeights {
  readonly embed: Float32Array; // [vocab, hidden]; tied with the output layer
  readonly wq: Float32Array; // [hidden, queryHeads * headDim]
  readonly wk: Float32Array; // [hidden, kvHeads * headDim]
  readonly wv: Float32Array; // [hidden, kvHeads * headDim]
  readonly wo: Float32Array; // [queryHeads * headDim, hidden]
}

function toyWeights(s: ToyShape, seed: number): ToyWeights {
  const rng = createRng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next());
  const mat = (rows: number, cols: number, scale: number) => Float32Array.from({ length: rows * cols }, () => gauss() * scale);
  // Keys get a larger scale so attention is peaked, as in trained models; uniform attention makes every policy look alike.
  return {
    embed: mat(s.vocab, s.hidden, 1),
    wq: mat(s.hidden, s.queryHeads * s.headDim, 1.5 / Math.sqrt(s.hidden)),
    wk: mat(s.hidden, s.kvHeads * s.headDim, 1.5 / Math.sqrt(s.hidden)),
    wv: mat(s.hidden, s.kvHeads * s.headDim, 1 / Math.sqrt(s.hidden)),
    wo: mat(s.queryHeads * s.headDim, s.hidden, 1 / Math.sqrt(s.queryHeads * s.headDim)),
  };
}

/** `x [hidden] · W [hidden, cols]`. */
function matvec(x: Float32Array, w: Float32Array, cols: number): Float32Array {
  const out = new Float32Array(cols);
  for (let i = 0; i < x.length; i++) for (let j = 0; j < cols; j++) out[j]! += x[i]! * w[i * cols + j]!;
  return out;
}

/** Rotate-half RoPE of one head vector at `position` (the true position, never a cache index). */
function rope(v: Float32Array, position: number): Float32Array {
  const d = v.length;
  const half = d / 2;
  const out = new Float32Array(d);
  for (let i = 0; i < half; i++) {
    const angle = position / 10000 ** ((2 * i) / d);
    const c = Math.cos(angle), s = Math.sin(angle);
    out[i] = v[i]! * c - v[i + half]! * s;
    out[i + half] = v[i + half]! * c + v[i]! * s;
  }
  return out;
}

/** What one forward call computed, besides the logits. */
interface AttentionRecord {
  /** Attention output of every query head of the last token, `[queryHeads * headDim]`. */
  readonly output: Float32Array;
  /** Column sums over this call's queries of the probabilities, mean over each GQA group, `[kvHeads, length]`. */
  readonly sums: Float32Array;
  /** The last query's probabilities, mean over each GQA group, `[kvHeads, length]`. */
  readonly last: Float32Array;
}

/**
 * Causal attention of `queries` (one row per new token, `[n][queryHeads * headDim]`, at `positions`) over
 * a host copy of the cache, written out by hand. Query head `q` reads kv head `floor(q / group)`; a
 * query sees the slots whose position is <= its own; `proportional` adds log(count) to merged slots.
 * It records what kvfold policies observe: the probabilities reduced to kv heads (mean over the group).
 */
export function attend(cache: HostLayer, queries: readonly Float32Array[], positions: readonly number[], s: ToyShape, proportional: boolean): AttentionRecord {
  const [kvHeads, length, d] = cache.keys.shape as [number, number, number];
  const group = s.queryHeads / kvHeads;
  const sums = new Float32Array(kvHeads * length);
  const last = new Float32Array(kvHeads * length);
  const output = new Float32Array(s.queryHeads * d);
  const p = new Float64Array(length);
  queries.forEach((qrow, n) => {
    for (let qh = 0; qh < s.queryHeads; qh++) {
      const h = Math.floor(qh / group);
      let max = -Infinity;
      for (let t = 0; t < length; t++) {
        if (cache.positions.data[h * length + t]! > positions[n]!) {
          p[t] = -Infinity;
          continue;
        }
        let dot = 0;
        for (let j = 0; j < d; j++) dot += qrow[qh * d + j]! * cache.keys.data[(h * length + t) * d + j]!;
        p[t] = dot / Math.sqrt(d) + (proportional ? Math.log(cache.counts.data[h * length + t]!) : 0);
        max = Math.max(max, p[t]!);
      }
      let z = 0;
      for (let t = 0; t < length; t++) z += p[t] = Math.exp(p[t]! - max);
      for (let t = 0; t < length; t++) {
        const prob = p[t]! / z;
        sums[h * length + t]! += prob / group;
        if (n === queries.length - 1) {
          last[h * length + t]! += prob / group;
          for (let j = 0; j < d; j++) output[qh * d + j]! += prob * cache.values.data[(h * length + t) * d + j]!;
        }
      }
    }
  });
  return { output, sums, last };
}

/** Options of {@link runCustomRuntime}. */
export interface CustomRuntimeOptions {
  /** Registered policy name: full, window, random, h2o, cam, kvmerger. Default `h2o`. */
  readonly policy?: string;
  /** Options of the policy. */
  readonly policyOptions?: Record<string, unknown>;
  /** Budget as a ratio of the prompt; default 0.5. */
  readonly budget?: number;
  /** Prompt tokens; default 64. */
  readonly promptLength?: number;
  /** Decoded tokens; default 16. */
  readonly steps?: number;
  /** Seed of weights, prompt and policy; default 3. */
  readonly seed?: number;
  /**
   * Add log(count) to merged slots' logits (proportional attention). Default false: KVMerger's default
   * `valueScale: "count"` already scales merged values by their count for plain attention; pair
   * `valueScale: "none"` with `proportional: true` instead. Doing both counts a merged slot twice.
   */
  readonly proportional?: boolean;
  /** Called with every policy call's context (to see what the runtime passes). */
  readonly onPolicyCall?: (phase: 'prefill' | 'step', ctx: PolicyContext<unknown>, observed: Observation<unknown>) => void;
}

/** One decoded token of {@link runCustomRuntime}. */
export interface StepRecord {
  /** True position of the token fed at this step. */
  readonly position: number;
  /** Slots per head after the policy ran. */
  readonly slots: number;
  /** Slots standing for more than one token (all heads). */
  readonly mergedSlots: number;
  /** `||o_full - o|| / ||o_full||` of the attention output against the uncompressed cache. */
  readonly outputError: number;
  /** The greedy next token agrees with the uncompressed cache's. */
  readonly sameToken: boolean;
}

/** What {@link runCustomRuntime} returns. */
export interface CustomRuntimeResult {
  /** Policy name. */
  readonly policy: string;
  /** Resolved budget in slots. */
  readonly budget: number;
  /** Slots per head after the prefill. */
  readonly prefillSlots: number;
  /** One record per decoded token. */
  readonly steps: readonly StepRecord[];
  /** Positions held by head 0 at the end. */
  readonly finalPositions: readonly number[];
}

/**
 * The toy decoder with a kvfold cache: the state a runtime keeps per sequence and layer.
 * Everything kvfold-specific is in {@link feed}.
 */
class ToyDecoder {
  private layer: LayerCache<unknown> | undefined;
  /** The runtime's own position counter: a compressed cache is shorter than the sequence. */
  private position = 0;
  private calls = 0;

  constructor(
    private readonly shape: ToyShape,
    private readonly weights: ToyWeights,
    private readonly kernels: KVKernels<unknown>,
    private readonly policy: KVCachePolicy | undefined,
    private readonly run: { budgetRatio: number; seed: number; proportional: boolean; onPolicyCall?: CustomRuntimeOptions['onPolicyCall'] },
    private promptLength = 0,
    private budget = 0,
  ) {}

  /** Feed tokens (the prompt first, then one token per step); returns the last token's logits and attention output. */
  async feed(tokens: readonly number[]): Promise<{ logits: Float32Array; output: Float32Array }> {
    const { shape: s, weights: w, kernels: k } = this;
    const d = s.headDim;
    const positions = tokens.map((_, i) => this.position + i);
    this.position += tokens.length;
    // 1. Project, rotate at the true positions, and append K/V to the cache: kvfold caches post-RoPE keys.
    const queries: Float32Array[] = [];
    const newK = new Float32Array(s.kvHeads * tokens.length * d);
    const newV = new Float32Array(s.kvHeads * tokens.length * d);
    tokens.forEach((tok, n) => {
      const x = w.embed.subarray(tok * s.hidden, (tok + 1) * s.hidden);
      const q = matvec(x, w.wq, s.queryHeads * d);
      const kk = matvec(x, w.wk, s.kvHeads * d);
      const vv = matvec(x, w.wv, s.kvHeads * d);
      const qr = new Float32Array(s.queryHeads * d);
      for (let h = 0; h < s.queryHeads; h++) qr.set(rope(q.subarray(h * d, (h + 1) * d), positions[n]!), h * d);
      queries.push(qr);
      for (let h = 0; h < s.kvHeads; h++) {
        // Layout [kvHeads, length, headDim]: head-major, tokens in position order.
        newK.set(rope(kk.subarray(h * d, (h + 1) * d), positions[n]!), (h * tokens.length + n) * d);
        newV.set(vv.subarray(h * d, (h + 1) * d), (h * tokens.length + n) * d);
      }
    });
    const fresh = hostLayer({ heads: s.kvHeads, length: tokens.length, headDim: d, keys: newK, values: newV, positions: Int32Array.from({ length: s.kvHeads * tokens.length }, (_, i) => positions[i % tokens.length]!) });
    let grown: LayerCache<unknown>;
    if (this.layer === undefined) {
      grown = layerFromHost(k, fresh);
    } else {
      const [nk, nv, np] = [k.fromHost(fresh.keys), k.fromHost(fresh.values), k.fromHost(fresh.positions)];
      grown = k.append(this.layer, nk, nv, np);
      const kept = new Set(layerTensors(grown));
      k.dispose(...[nk, nv, np].filter((t) => !kept.has(t)));
      disposeLayer(k, this.layer, grown);
    }
    // 2. Attention over the cache, by hand, recording what policies observe (reduced to kv heads).
    const host = await layerToHost(k, grown);
    const att = attend(host, queries, positions, s, this.run.proportional);
    const logits = matvec(matvec(att.output, w.wo, s.hidden), transpose(w.embed, s.vocab, s.hidden), s.vocab);
    // 3. Call the policy: prefill after the prompt, step after each decoded token.
    if (!this.policy) {
      this.layer = grown;
      return { logits, output: att.output };
    }
    const step = this.calls++;
    if (step === 0) {
      this.promptLength = tokens.length;
      this.budget = resolveBudget(this.run.budgetRatio, tokens.length); // resolved once per prompt
    }
    const observed: Observation<unknown> = {
      attention: k.fromHost(hostTensor('float32', [s.kvHeads, host.keys.shape[1]!], att.sums)),
      lastAttention: k.fromHost(hostTensor('float32', [s.kvHeads, host.keys.shape[1]!], att.last)),
      queries: k.fromHost(hostTensor('float32', [s.queryHeads, tokens.length, d], interleave(queries, s.queryHeads, d))),
    };
    const ctx = createContext({ kernels: k, budget: this.budget, promptLength: this.promptLength, step, newTokens: tokens.length, seed: this.run.seed, layerIndex: 0, layerCount: 1 });
    this.run.onPolicyCall?.(step === 0 ? 'prefill' : 'step', ctx, observed);
    const next = step === 0 ? await this.policy.prefill(grown, observed, ctx) : await this.policy.step(grown, observed, ctx);
    // 4. Ownership: the policy never frees its input; the runtime swaps in the result and frees the rest.
    k.dispose(observed.attention, observed.lastAttention, observed.queries);
    disposeLayer(k, grown, next);
    this.layer = next;
    return { logits, output: att.output };
  }

  /** The current cache in host memory. */
  async snapshot(): Promise<HostLayer> {
    return layerToHost(this.kernels, this.layer!);
  }

  dispose(): void {
    if (this.layer) disposeLayer(this.kernels, this.layer);
  }
}

function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = m[r * cols + c]!;
  return t;
}

/** `[n][queryHeads * d]` rows → `[queryHeads, n, d]`, the layout of {@link Observation.queries}. */
function interleave(rows: readonly Float32Array[], heads: number, d: number): Float32Array {
  const out = new Float32Array(heads * rows.length * d);
  rows.forEach((r, n) => {
    for (let h = 0; h < heads; h++) out.set(r.subarray(h * d, (h + 1) * d), (h * rows.length + n) * d);
  });
  return out;
}

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

function relError(ref: Float32Array, x: Float32Array): number {
  let num = 0, den = 0;
  ref.forEach((r, i) => {
    num += (r - x[i]!) ** 2;
    den += r * r;
  });
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/**
 * Decode with the toy model twice, once keeping every token and once with `policy`, feeding both the
 * same tokens (the uncompressed run's greedy choices), and report how the compressed cache evolves.
 */
export async function runCustomRuntime(options: CustomRuntimeOptions = {}): Promise<CustomRuntimeResult> {
  const s = toyShape;
  const seed = options.seed ?? 3;
  const promptLength = options.promptLength ?? 64;
  const steps = options.steps ?? 16;
  const name = options.policy ?? 'h2o';
  const kv = KVFold.create({ plugins: [reference, baselines, h2o, cam, kvmerger] });
  const kernels = await kv.backend('reference');
  const weights = toyWeights(s, seed);
  const run = { budgetRatio: options.budget ?? 0.5, seed, proportional: options.proportional ?? false, ...(options.onPolicyCall ? { onPolicyCall: options.onPolicyCall } : {}) };
  const full = new ToyDecoder(s, weights, kernels, undefined, run);
  const compressed = new ToyDecoder(s, weights, kernels, kv.policy(name, options.policyOptions ?? {}), run);
  const rng = createRng(seed).fork(7);
  const prompt = Array.from({ length: promptLength }, () => rng.int(s.vocab));
  let a = await full.feed(prompt);
  let b = await compressed.feed(prompt);
  const prefillSlots = (await compressed.snapshot()).keys.shape[1]!;
  const records: StepRecord[] = [];
  for (let i = 0; i < steps; i++) {
    const token = argmax(a.logits);
    const sameToken = argmax(b.logits) === token;
    a = await full.feed([token]);
    b = await compressed.feed([token]);
    const snap = await compressed.snapshot();
    records.push({ position: promptLength + i, slots: snap.keys.shape[1]!, mergedSlots: snap.counts.data.filter((c) => c > 1).length, outputError: relError(a.output, b.output), sameToken });
  }
  const last = await compressed.snapshot();
  full.dispose();
  compressed.dispose();
  return { policy: name, budget: resolveBudget(run.budgetRatio, promptLength), prefillSlots, steps: records, finalPositions: Array.from(last.positions.data.subarray(0, last.keys.shape[1]!)) };
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const policy = process.argv[2] ?? 'h2o';
  const r = await runCustomRuntime({ policy });
  console.log(`toy decoder: 1 layer, ${toyShape.queryHeads} query heads / ${toyShape.kvHeads} kv heads, head dim ${toyShape.headDim}; 64-token prompt, 16 decoded tokens`);
  console.log(`policy ${r.policy}, budget 50% = ${r.budget} slots; after prefill: ${r.prefillSlots} slots per head\n`);
  console.log('| position | slots / head | merged slots | attn. output rel. error vs full cache | same greedy token |');
  console.log('|---:|---:|---:|---:|:---:|');
  for (const st of r.steps) console.log(`| ${st.position} | ${st.slots} | ${st.mergedSlots} | ${st.outputError.toFixed(4)} | ${st.sameToken ? 'yes' : 'no'} |`);
  console.log(`\nhead 0 holds positions: ${r.finalPositions.join(' ')}`);
  console.log('(random weights: the tokens mean nothing; the point is the contract between the loop and the policy)');
}
