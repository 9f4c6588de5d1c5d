import {
  ConfigError,
  KVFoldError,
  VALUE_LIMIT,
  createContext,
  createRng,
  disposeLayer,
  hostTensor,
  layerFromHost,
  layerToHost,
  type HostLayer,
  type HostTensor,
  type KVCachePolicy,
  type KVFold,
  type KVKernels,
  type LayerCache,
  type Observation,
  type Rng,
} from '@kvfold/core';

/**
 * The fuzz harness: random policy calls, well-formed and hostile, run through guarded policies on every
 * backend, with what must never happen counted. Each case draws a policy and its options, a cache shape,
 * an input profile (ordinary values, exact ties, tiny or huge magnitudes, values over the guard's limit,
 * NaN and infinities, bad counts or positions, malformed arguments) and a few decode steps, from its own
 * seed, so any case can be rerun alone.
 * @module
 */

/** A backend the harness runs cases on. */
export interface FuzzBackend {
  /** Label in the report (`reference`, `tfjs`, `onnx`, `onnx-native`). */
  readonly label: string;
  /** Registered backend name. */
  readonly name: string;
  /** Backend options. */
  readonly options: Record<string, unknown>;
}

/** The backends {@link runFuzz} knows by label. */
export const FUZZ_BACKENDS: Readonly<Record<string, FuzzBackend>> = {
  reference: { label: 'reference', name: 'reference', options: {} },
  tfjs: { label: 'tfjs', name: 'tfjs', options: {} },
  onnx: { label: 'onnx', name: 'onnx', options: { native: 'off', threads: 1 } },
  'onnx-native': { label: 'onnx-native', name: 'onnx', options: { native: 'require', threads: 1 } },
};

/** Input profiles, each a kind of input a policy may receive. */
export const FUZZ_PROFILES = [
  'normal',
  'ties',
  'tiny',
  'huge',
  'mixed',
  'zeros',
  'constant',
  'big-counts',
  'negative-attention',
  'over-limit',
  'non-finite',
  'bad-counts',
  'overflowing-counts',
  'bad-positions',
  'malformed',
] as const;

/** One input profile. */
export type FuzzProfile = (typeof FUZZ_PROFILES)[number];

/** Profiles whose inputs are all finite numbers (so a non-finite output is a bug). */
const FINITE_PROFILES: ReadonlySet<FuzzProfile> = new Set(FUZZ_PROFILES.filter((p) => p !== 'non-finite'));

/** Options of {@link runFuzz}. */
export interface FuzzOptions {
  /** Number of cases (default 500). */
  readonly cases?: number;
  /** Seed of the first case; case `i` uses seed `seed + i` (default 1). */
  readonly seed?: number;
  /** Backend labels of {@link FUZZ_BACKENDS}; the first is the reference (default reference, tfjs, onnx). */
  readonly backends?: readonly string[];
  /** Policies drawn from (default every registered one). */
  readonly policies?: readonly string[];
  /** Reference reruns on perturbed inputs that decide whether a kept-set mismatch is a tie (default 6). */
  readonly perturbations?: number;
  /** Relative size of those perturbations (default 1e-5). */
  readonly epsilon?: number;
  /** Called after each case. */
  readonly onCase?: (done: number, total: number) => void;
}

/** A sample of what went wrong, to rerun one case alone. */
export interface FuzzSample {
  /** What was counted. */
  readonly kind: string;
  /** The case's seed. */
  readonly seed: number;
  /** The policy and profile of the case. */
  readonly what: string;
  /** Details (error message, backends involved). */
  readonly detail: string;
}

/** A backend of a fuzz run: what it ran on, or why it was skipped. */
export interface FuzzBackendStatus {
  /** Label of {@link FUZZ_BACKENDS}. */
  readonly label: string;
  /** The kernels' `describe()`, when the backend ran. */
  readonly runs?: string;
  /** Why it could not start (a backend other than the first is skipped, not fatal). */
  readonly skipped?: string;
}

/** Cases of one policy in a fuzz run. */
export interface FuzzPolicyCount {
  /** Cases that drew the policy. */
  readonly cases: number;
  /** Of those, cases whose calls all returned a cache on the reference. */
  readonly accepted: number;
}

/** What {@link runFuzz} counted. */
export interface FuzzReport {
  /** Cases run. */
  readonly cases: number;
  /** First seed. */
  readonly seed: number;
  /** Backends that ran, with what each runs, or why it was skipped. */
  readonly backends: readonly FuzzBackendStatus[];
  /** Policies drawn. */
  readonly policies: readonly string[];
  /** Policy calls (prefill and steps) made on each backend. */
  readonly calls: number;
  /** Cases whose calls all returned a cache, on the reference. */
  readonly accepted: number;
  /** Cases refused with a typed error, by code, on the reference. */
  readonly refused: Readonly<Record<string, number>>;
  /** Per policy: cases drawn and cases whose calls all returned a cache on the reference. */
  readonly byPolicy: Readonly<Record<string, FuzzPolicyCount>>;
  /** Errors that were not kvfold errors, on any backend. Must be 0. */
  readonly untypedErrors: number;
  /** Outputs holding NaN or an infinity although every input was finite, on any backend. Must be 0. */
  readonly nonFiniteOutputs: number;
  /** Cases where a backend refused and another did not, or they refused with different codes. Must be 0. */
  readonly decisionMismatches: number;
  /** Calls whose kept positions or counts differ from the reference's, ties excepted. Must be 0. */
  readonly keptSetMismatches: number;
  /** Calls whose kept set differs from the reference's where the reference's own choice changes under a perturbation of `epsilon` of the inputs and of computed kernel outputs (a tie). */
  readonly ties: number;
  /** Calls that changed a tensor they were given. Must be 0. */
  readonly mutatedInputs: number;
  /** Cases where the reference, run twice, answered differently. Must be 0. */
  readonly nondeterministic: number;
  /** Relative perturbation used to tell ties. */
  readonly epsilon: number;
  /** Up to 20 samples of everything counted that must be 0. */
  readonly samples: readonly FuzzSample[];
  /** Wall time, seconds. */
  readonly seconds: number;
}

/** One drawn case. */
interface FuzzCase {
  readonly seed: number;
  readonly policy: string;
  readonly options: Record<string, unknown>;
  readonly profile: FuzzProfile;
  readonly prompt: HostLayer;
  /** Observed attention of call `call` over a cache of `n` slots (deterministic per case). */
  readonly attention: (call: number, heads: number, n: number) => HostTensor;
  /**
   * Queries of call `call` (`n` tokens: the prompt, then one per step) for policies that need them,
   * `[queryHeads, n, headDim]`, drawn with the case's magnitude profile (deterministic per case).
   */
  readonly queries: (call: number, n: number) => HostTensor;
  readonly steps: { readonly keys: HostTensor; readonly values: HostTensor; readonly position: number }[];
  readonly budget: number;
  /** For `malformed`: which argument is broken. */
  readonly malformed?: string;
}

/** Option variants per built-in policy; other policies run with their defaults. */
const OPTION_VARIANTS: Readonly<Record<string, readonly Record<string, unknown>[]>> = {
  full: [{}],
  window: [{}, { sink: 2 }],
  random: [{}, { recent: 0.25 }],
  h2o: [{}, { recent: 0.5 }, { recent: 1, normalize: true }],
  cam: [{}, { mergeBudget: 4 }, { gate: 'expected' }, { evict: 'window', sink: 1 }],
  kvmerger: [
    {},
    { recent: 2, heavy: 2 },
    { mode: 'paper', eps: 0.1, sets: 'shared' },
    { sigma: { mode: 'rms' } },
    { sigma: { mode: 'eq4' } },
    { valueScale: 'none' },
    { sets: 'shared', minSimilarity: 0.5 },
  ],
  snapkv: [{}, { window: 4 }, { window: 2, kernelSize: 1 }, { window: 3, decode: 'evict' }],
  pyramidkv: [{}, { window: 2, beta: 2 }, { window: 4, kernelSize: 3, decode: { every: 2 } }],
  knorm: [{}, { decode: 'evict' }],
  // chain needs its policies named; only its first policy receives the observation.
  chain: [
    { policies: [{ name: 'window' }] },
    { policies: [{ name: 'kvmerger', options: { mode: 'paper' } }, { name: 'knorm' }] },
    { policies: [{ name: 'h2o' }, { name: 'window', options: { sink: 1 } }] },
  ],
};

/** A magnitude for a profile: the scale of keys and values. */
function magnitude(profile: FuzzProfile, r: Rng): () => number {
  switch (profile) {
    case 'tiny':
      return () => 10 ** (-38 + 18 * r.next());
    case 'huge':
      return () => 10 ** (15 + 4.2 * r.next()); // up to about 1.6e19, under the 2^64 limit
    case 'mixed':
      return () => (r.next() < 0.05 ? 0 : 10 ** (-40 + 59 * r.next()));
    default:
      return () => 2;
  }
}

function floats(n: number, profile: FuzzProfile, r: Rng): Float32Array {
  const out = new Float32Array(n);
  if (profile === 'zeros') return out;
  if (profile === 'constant') return out.fill(0.75);
  const mag = magnitude(profile, r);
  for (let i = 0; i < n; i++) {
    const sign = r.next() < 0.5 ? -1 : 1;
    out[i] = profile === 'ties' ? (r.int(9) - 4) / 4 : sign * r.next() * mag();
  }
  return out;
}

/** Draw case `seed`. */
function drawCase(seed: number, policies: readonly string[]): FuzzCase {
  const r = createRng(seed);
  const policy = policies[r.int(policies.length)]!;
  const variants = OPTION_VARIANTS[policy] ?? [{}];
  const options = variants[r.int(variants.length)]!;
  const profile = FUZZ_PROFILES[r.int(FUZZ_PROFILES.length)]!;
  const H = 1 + r.int(3);
  const L = 1 + r.int(r.next() < 0.2 ? 96 : 32);
  const D = 1 + r.int(r.next() < 0.2 ? 64 : 12);
  const nSteps = r.int(4);
  const N = H * L;
  const keys = floats(N * D, profile, r);
  const values = floats(N * D, profile, r);
  const positions = new Int32Array(N);
  for (let h = 0; h < H; h++) {
    let p = r.int(3);
    for (let i = 0; i < L; i++) {
      positions[h * L + i] = p;
      p += 1 + (r.next() < 0.3 ? r.int(3) : 0);
    }
  }
  const counts = new Int32Array(N).fill(1);
  const scores = new Float32Array(N);
  const positive = (): number => (profile === 'ties' ? r.int(4) / 4 : profile === 'tiny' || profile === 'huge' || profile === 'mixed' ? Math.abs(floats(1, profile, r)[0]!) : r.next());
  if (r.next() < 0.5) for (let i = 0; i < N; i++) scores[i] = positive();
  if (profile === 'big-counts') {
    const cap = Math.floor((2 ** 31 - 1) / L);
    for (let i = 0; i < N; i++) counts[i] = 1 + r.int(cap);
  } else if (r.next() < 0.3) for (let i = 0; i < N; i++) counts[i] = 1 + r.int(4);
  let malformed: string | undefined;
  const poison = (t: Float32Array): void => {
    if (t.length > 0) t[r.int(t.length)] = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY][r.int(3)]!;
  };
  const big = (t: Float32Array): void => {
    if (t.length > 0) t[r.int(t.length)] = (r.next() < 0.5 ? -1 : 1) * [VALUE_LIMIT, 1e20, 3e38, 3.4028234663852886e38][r.int(4)]!;
  };
  const target = r.int(4);
  const pick = [keys, values, scores][target];
  if (pick && profile === 'non-finite') poison(pick);
  if (pick && profile === 'over-limit') big(pick);
  const attentionSeed = r.int(2 ** 31);
  const attention = (call: number, heads: number, n: number): HostTensor => {
    const ar = createRng(attentionSeed).fork(call);
    const a = new Float32Array(heads * n);
    for (let i = 0; i < a.length; i++) {
      a[i] = profile === 'negative-attention' ? ar.next() * 2 - 1 : profile === 'ties' ? ar.int(4) / 4 : profile === 'tiny' || profile === 'huge' || profile === 'mixed' ? Math.abs(floats(1, profile, ar)[0]!) : ar.next();
    }
    // The fourth target: the first call's attention.
    if (call === 0 && target === 3) {
      const t = createRng(attentionSeed).fork(999);
      if (a.length > 0 && profile === 'non-finite') a[t.int(a.length)] = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY][t.int(3)]!;
      if (a.length > 0 && profile === 'over-limit') a[t.int(a.length)] = [VALUE_LIMIT, 1e20, 3e38][t.int(3)]!;
    }
    return hostTensor('float32', [heads, n], a);
  };
  if (profile === 'bad-counts' && N > 0) counts[r.int(N)] = -r.int(3);
  if (profile === 'overflowing-counts') for (let i = 0; i < N; i++) counts[i] = 2 ** 31 - 1 - r.int(4);
  if (profile === 'bad-positions' && L > 1) {
    const h = r.int(H);
    const i = 1 + r.int(L - 1);
    positions[h * L + i] = positions[h * L + i - 1]! - r.int(2);
  }
  if (profile === 'malformed') malformed = ['budget-zero', 'budget-too-large', 'observed-null', 'layer-null', 'scores-int32', 'attention-shape', 'values-shape', 'new-tokens'][r.int(8)]!;
  const steps = Array.from({ length: nSteps }, (_, s) => {
    const k = floats(H * D, profile, r);
    const v = floats(H * D, profile, r);
    return { keys: hostTensor('float32', [H, 1, D], k), values: hostTensor('float32', [H, 1, D], v), position: 10 * L + 10 + s };
  });
  const budget = 1 + r.int(L);
  // Drawn from a fork of the seed, so the other draws of a case do not depend on whether it has queries.
  const queryRng = createRng(seed).fork(3000);
  const queryHeads = H * (1 + queryRng.int(2));
  const querySeed = queryRng.int(2 ** 31);
  const queries = (call: number, n: number): HostTensor => hostTensor('float32', [queryHeads, n, D], floats(queryHeads * n * D, profile, createRng(querySeed).fork(call)));
  return {
    seed,
    policy,
    options,
    profile,
    prompt: {
      keys: hostTensor('float32', [H, L, D], keys),
      values: hostTensor('float32', [H, L, D], values),
      positions: hostTensor('int32', [H, L], positions),
      counts: hostTensor('int32', [H, L], counts),
      scores: hostTensor('float32', [H, L], scores),
    },
    attention,
    queries,
    steps,
    budget,
    ...(malformed ? { malformed } : {}),
  };
}

/** What one backend did with a case. */
type Outcome =
  | { readonly ok: true; readonly caches: readonly HostLayer[]; readonly mutated: number }
  | { readonly ok: false; readonly code: string; readonly message: string; readonly typed: boolean; readonly mutated: number };

function sameArray(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}

function sameLayer(a: HostLayer, b: HostLayer): boolean {
  return (['keys', 'values', 'positions', 'counts', 'scores'] as const).every((f) => sameArray(a[f].shape, b[f].shape) && sameArray(a[f].data, b[f].data));
}

function allFiniteHost(l: HostLayer): boolean {
  for (const f of ['keys', 'values', 'scores'] as const) for (const x of l[f].data) if (!Number.isFinite(x)) return false;
  return true;
}

/** The kept set of a cache: positions and counts per head. */
function keptSame(a: HostLayer, b: HostLayer): boolean {
  return sameArray(a.positions.shape, b.positions.shape) && sameArray(a.positions.data, b.positions.data) && sameArray(a.counts.data, b.counts.data);
}

/** The case with every float input multiplied by `1 + epsilon * u`, u uniform in [-1, 1]. */
function perturb(c: FuzzCase, epsilon: number, salt: number): FuzzCase {
  const r = createRng(c.seed).fork(1000 + salt);
  const f = (t: HostTensor, rr: Rng = r): HostTensor => hostTensor('float32', t.shape, Float32Array.from(t.data, (x) => x * (1 + epsilon * (2 * rr.next() - 1))));
  return {
    ...c,
    prompt: { ...c.prompt, keys: f(c.prompt.keys) as HostTensor<'float32'>, values: f(c.prompt.values) as HostTensor<'float32'>, scores: f(c.prompt.scores) as HostTensor<'float32'> },
    attention: (call, heads, n) => f(c.attention(call, heads, n), createRng(c.seed).fork(2000 + 97 * salt + call)),
    queries: (call, n) => f(c.queries(call, n), createRng(c.seed).fork(4000 + 97 * salt + call)),
    steps: c.steps.map((s) => ({ ...s, keys: f(s.keys), values: f(s.values) })),
  };
}

/** Kernels whose float outputs are computed (not copied): their results may differ between backends within the kernel contract. */
const COMPUTING_KERNELS: ReadonlySet<string> = new Set(['accumulate', 'adjacentCosine', 'keyNorms', 'mergeSegments', 'mergeIntoNeighbours', 'observe']);

/**
 * The reference kernels with every float32 output of a computing kernel multiplied by `1 + epsilon * u`
 * (u uniform in [-1, 1]): what another backend may return within the kernel contract (1e-5 relative).
 * A decision that changes under this is a tie the float32 backends cannot be asked to break like the
 * reference (e.g. SnapKV ranking slots whose attention differs by a float32 ulp).
 */
function jittered<T>(k: KVKernels<T>, epsilon: number, r: Rng): KVKernels<T> {
  const shake = (v: unknown): unknown => {
    const t = v as HostTensor;
    if (typeof v !== 'object' || v === null) return v;
    if (t.dtype === 'float32' && t.data instanceof Float32Array) return hostTensor('float32', t.shape, Float32Array.from(t.data, (x) => x * (1 + epsilon * (2 * r.next() - 1))));
    if (t.data !== undefined) return v;
    return Object.fromEntries(Object.entries(v).map(([key, x]) => [key, shake(x)]));
  };
  return new Proxy(k, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || !COMPUTING_KERNELS.has(String(prop))) return v;
      return (...args: unknown[]) => shake((v as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
}

/** Run a case on one backend: prefill, then each step, through a guarded policy. */
async function play<T>(kv: KVFold, k: KVKernels<T>, c: FuzzCase): Promise<Outcome> {
  let mutated = 0;
  const caches: HostLayer[] = [];
  // `held` is what the finally block releases: the cache between calls, and a call's observations.
  const held: { layer?: LayerCache<T>; observed: T[] } = { observed: [] };
  try {
    const policy: KVCachePolicy = kv.policy(c.policy, c.options);
    const [H, L, D] = c.prompt.keys.shape as [number, number, number];
    let layer: LayerCache<T> = layerFromHost(k, c.malformed === 'scores-int32' ? { ...c.prompt, scores: hostTensor('int32', [H, L]) as unknown as HostTensor<'float32'> } : c.prompt);
    held.layer = layer;
    if (c.malformed === 'values-shape') {
      k.dispose(layer.values);
      layer = { ...layer, values: k.fromHost(hostTensor('float32', [H, L + 1, D])) };
      held.layer = layer;
    }
    for (let call = 0; call <= c.steps.length; call++) {
      const step = call === 0 ? undefined : c.steps[call - 1]!;
      if (step) {
        const pos = k.fromHost(hostTensor('int32', [H, 1], new Int32Array(H).fill(step.position)));
        const sk = k.fromHost(step.keys);
        const sv = k.fromHost(step.values);
        const grown = k.append(layer, sk, sv, pos);
        k.dispose(pos, sk, sv);
        disposeLayer(k, layer, grown);
        layer = grown;
        held.layer = layer;
      }
      const before = await layerToHost(k, layer);
      const n = k.shapeOf(layer.keys)[1]!;
      const att = c.attention(call, H, n);
      const attention = k.fromHost(c.malformed === 'attention-shape' ? hostTensor('float32', [H + 1, n]) : att);
      const last = k.fromHost(att);
      const queries = policy.needs.includes('queries') ? k.fromHost(c.queries(call, call === 0 ? L : 1)) : undefined;
      held.observed = [attention, last, ...(queries ? [queries] : [])];
      const observed: Observation<T> = { attention, lastAttention: last, ...(queries ? { queries } : {}) };
      const budget = c.malformed === 'budget-zero' ? 0 : c.malformed === 'budget-too-large' ? L + 1 : c.budget;
      const ctx = createContext({ kernels: k, budget, promptLength: L, step: call, seed: c.seed, ...(call > 0 ? { newTokens: c.malformed === 'new-tokens' ? -1 : 1 } : {}) });
      const arg: LayerCache<T> = c.malformed === 'layer-null' ? (null as unknown as LayerCache<T>) : layer;
      const obs: Observation<T> = c.malformed === 'observed-null' ? (null as unknown as Observation<T>) : observed;
      const next: LayerCache<T> = call === 0 ? await policy.prefill(arg, obs, ctx) : await policy.step(arg, obs, ctx);
      const after = await layerToHost(k, layer);
      if (!sameLayer(before, after)) mutated++;
      k.dispose(attention, last, queries);
      held.observed = [];
      disposeLayer(k, layer, next);
      layer = next;
      held.layer = layer;
      caches.push(await layerToHost(k, layer));
    }
    return { ok: true, caches, mutated };
  } catch (e) {
    const typed = e instanceof KVFoldError;
    return { ok: false, typed, code: typed ? e.code : 'untyped', message: e instanceof Error ? `${e.name}: ${e.message}` : String(e), mutated };
  } finally {
    k.dispose(...held.observed);
    if (held.layer) disposeLayer(k, held.layer);
  }
}

/**
 * Run `cases` fuzz cases on every backend and count what must never happen: untyped errors, non-finite
 * outputs from finite inputs, backends deciding differently (one refuses, another does not), kept sets
 * (positions and counts) that differ from the reference's except at ties, mutated inputs, and a reference
 * that answers differently twice. A kept-set difference counts as a tie when the reference's own kept set
 * changes under one of `perturbations` random perturbations of relative size `epsilon` of the float
 * inputs and of the float outputs of the reference's computing kernels (what the kernel contract lets
 * another backend return).
 */
export async function runFuzz(kv: KVFold, options: FuzzOptions = {}): Promise<FuzzReport> {
  const t0 = performance.now();
  const total = options.cases ?? 500;
  const seed = options.seed ?? 1;
  const epsilon = options.epsilon ?? 1e-5;
  const perturbations = options.perturbations ?? 6;
  const policies = options.policies ?? kv.policies.names();
  const labels = options.backends ?? ['reference', 'tfjs', 'onnx'];
  const backends: FuzzBackendStatus[] = [];
  const kernels: { label: string; k: KVKernels<unknown> }[] = [];
  for (const label of labels) {
    const spec = FUZZ_BACKENDS[label];
    if (!spec) throw new ConfigError([{ path: '/backends', rule: 'enum', message: `unknown fuzz backend "${label}"; known: ${Object.keys(FUZZ_BACKENDS).join(', ')}`, allowed: Object.keys(FUZZ_BACKENDS) }], 'fuzz options');
    try {
      const k = await kv.backend(spec.name, spec.options);
      kernels.push({ label, k });
      backends.push({ label, runs: k.describe() });
    } catch (e) {
      if (kernels.length === 0) throw e;
      backends.push({ label, skipped: (e as Error).message });
    }
  }
  const ref = kernels[0]!.k;
  const refused: Record<string, number> = {};
  const byPolicy: Record<string, { cases: number; accepted: number }> = Object.fromEntries(policies.map((p) => [p, { cases: 0, accepted: 0 }]));
  const samples: FuzzSample[] = [];
  const sample = (kind: string, c: FuzzCase, detail: string): void => {
    if (samples.length < 20) samples.push({ kind, seed: c.seed, what: `${c.policy} ${JSON.stringify(c.options)} ${c.profile}${c.malformed ? `:${c.malformed}` : ''}`, detail });
  };
  let calls = 0;
  let accepted = 0;
  let untypedErrors = 0;
  let nonFiniteOutputs = 0;
  let decisionMismatches = 0;
  let keptSetMismatches = 0;
  let ties = 0;
  let mutatedInputs = 0;
  let nondeterministic = 0;
  for (let i = 0; i < total; i++) {
    const c = drawCase(seed + i, policies);
    const outcomes: Outcome[] = [];
    for (const { k } of kernels) outcomes.push(await play(kv, k, c));
    calls += c.steps.length + 1;
    const first = outcomes[0]!;
    outcomes.forEach((o, b) => {
      mutatedInputs += o.mutated;
      if (o.mutated > 0) sample('mutated input', c, kernels[b]!.label);
      if (!o.ok && !o.typed) {
        untypedErrors++;
        sample('untyped error', c, `${kernels[b]!.label}: ${o.message}`);
      }
      if (o.ok && FINITE_PROFILES.has(c.profile) && !o.caches.every(allFiniteHost)) {
        nonFiniteOutputs++;
        sample('non-finite output', c, kernels[b]!.label);
      }
    });
    if (first.ok) accepted++;
    byPolicy[c.policy]!.cases++;
    if (first.ok) byPolicy[c.policy]!.accepted++;
    else refused[first.code] = (refused[first.code] ?? 0) + 1;
    const again = await play(kv, ref, c);
    if (again.ok !== first.ok || (again.ok && first.ok && !again.caches.every((l, j) => sameLayer(l, first.caches[j]!))) || (!again.ok && !first.ok && again.code !== first.code)) {
      nondeterministic++;
      sample('nondeterministic', c, 'reference run twice');
    }
    for (let b = 1; b < outcomes.length; b++) {
      const o = outcomes[b]!;
      if (o.ok !== first.ok || (!o.ok && !first.ok && o.code !== first.code)) {
        decisionMismatches++;
        sample('decision mismatch', c, `${kernels[0]!.label}: ${first.ok ? 'ok' : first.message} / ${kernels[b]!.label}: ${o.ok ? 'ok' : o.message}`);
        continue;
      }
      if (!o.ok || !first.ok) continue;
      const differing = o.caches.map((l, j) => !keptSame(l, first.caches[j]!));
      if (!differing.some(Boolean)) continue;
      // A difference is a tie when the reference itself decides otherwise on slightly perturbed inputs.
      let unstable = false;
      for (let p = 0; p < perturbations && !unstable; p++) {
        const q = await play(kv, jittered(ref, epsilon, createRng(c.seed).fork(5000 + p)), perturb(c, epsilon, p));
        if (!q.ok || q.caches.some((l, j) => !keptSame(l, first.caches[j]!))) unstable = true;
      }
      const n = differing.filter(Boolean).length;
      if (unstable) ties += n;
      else {
        keptSetMismatches += n;
        sample('kept-set mismatch', c, `${kernels[b]!.label} vs ${kernels[0]!.label} at call ${differing.indexOf(true)}`);
      }
    }
    options.onCase?.(i + 1, total);
  }
  for (const { k } of kernels) (k as { release?: () => void }).release?.();
  return {
    cases: total,
    seed,
    backends,
    policies,
    calls,
    accepted,
    refused,
    byPolicy,
    untypedErrors,
    nonFiniteOutputs,
    decisionMismatches,
    keptSetMismatches,
    ties,
    mutatedInputs,
    nondeterministic,
    epsilon,
    samples,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

/** The counts a clean run must show as zero. */
export function fuzzFailures(r: FuzzReport): number {
  return r.untypedErrors + r.nonFiniteOutputs + r.decisionMismatches + r.keptSetMismatches + r.mutatedInputs + r.nondeterministic;
}

/** The report as Markdown lines (what `kvfold fuzz` prints and bench/RESULTS.md records). */
export function fuzzSummary(r: FuzzReport): string {
  const ran = r.backends.filter((b) => b.runs).map((b) => `${b.label} (${b.runs})`);
  const skipped = r.backends.filter((b) => b.skipped).map((b) => `${b.label}: ${b.skipped}`);
  const refused = Object.entries(r.refused)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([code, n]) => `${code} ${n}`)
    .join(', ');
  const lines = [
    `| what | count |`,
    `| --- | ---: |`,
    `| cases (seeds ${r.seed}..${r.seed + r.cases - 1}) | ${r.cases} |`,
    `| policy calls per backend (prefill + steps) | ${r.calls} |`,
    `| cases every call of which returned a cache (reference) | ${r.accepted} |`,
    `| cases refused with a typed error (reference) | ${r.cases - r.accepted} (${refused || 'none'}) |`,
    `| accepted / drawn, per policy (reference) | ${Object.entries(r.byPolicy)
      .map(([p, n]) => `${p} ${n.accepted}/${n.cases}`)
      .join(', ')} |`,
    `| untyped errors | ${r.untypedErrors} |`,
    `| non-finite outputs from finite inputs | ${r.nonFiniteOutputs} |`,
    `| decision mismatches between backends | ${r.decisionMismatches} |`,
    `| kept-set mismatches vs reference (ties excepted) | ${r.keptSetMismatches} |`,
    `| ties (reference changes its choice under a ${r.epsilon} relative perturbation of inputs and kernel outputs) | ${r.ties} |`,
    `| mutated inputs | ${r.mutatedInputs} |`,
    `| nondeterministic reference results | ${r.nondeterministic} |`,
  ];
  return [
    `Backends: ${ran.join('; ')}${skipped.length ? `. Skipped: ${skipped.join('; ')}` : ''}.`,
    `Policies: ${r.policies.join(', ')}. ${r.seconds} s.`,
    '',
    ...lines,
    ...(r.samples.length ? ['', 'Samples (rerun one with `kvfold fuzz --seed <seed> --cases 1`):', ...r.samples.map((s) => `- ${s.kind}: seed ${s.seed}, ${s.what}: ${s.detail}`)] : []),
  ].join('\n');
}
