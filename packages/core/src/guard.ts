import { DTypeError, EmptyCacheError, MissingObservationError, NonFiniteError, ShapeError, BudgetError, ValueRangeError } from './errors.js';
import type { KVKernels, LayerCache } from './kernels.js';
import type { KVCachePolicy, Observation, PolicyContext } from './policy.js';
import { SPARE_POSITION } from './scoring/in-place.js';

/**
 * Exclusive magnitude limit of every float a guarded policy receives (2^64, about 1.8e19). Below it, every
 * sum a built-in policy or kernel forms (a merged value is at most 2^31 counts times a value, a score at
 * most 2^31 slots times a score) stays far inside float32's range on every backend, so a finite input
 * never yields a non-finite result; real key and value activations are many orders of magnitude smaller.
 */
export const VALUE_LIMIT = 2 ** 64;

/** Largest int32: the sum of a head's counts must not exceed it, or a merge of those slots would overflow. */
const INT32_MAX = 2 ** 31 - 1;

/** What {@link guardPolicy} checks on every call. */
export interface GuardOptions {
  /**
   * How much of keys and values is scanned for NaN, infinities and magnitudes of {@link VALUE_LIMIT} or
   * more: `prefill` (default) scans the whole cache at prefill and, at each step, the `newTokens` slots
   * appended since the previous call; `always` scans the whole cache on every call; `never` scans no
   * tensor's contents (scores, attention, positions and counts included): only shapes, dtypes and the
   * budget are checked.
   */
  readonly finiteCheck?: 'prefill' | 'always' | 'never';
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Dimensions of a handle, or a ShapeError naming the field when the backend does not recognise it as a tensor. */
function dims<T>(kernels: KVKernels<T>, tensor: T, where: string, field: string): readonly number[] {
  let s: unknown;
  try {
    s = tensor === undefined || tensor === null ? undefined : kernels.shapeOf(tensor);
  } catch {
    s = undefined;
  }
  if (!Array.isArray(s) || !s.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new ShapeError(`${where}: ${field} is not a tensor of the ${kernels.backend} backend`, { field });
  }
  return s as readonly number[];
}

/**
 * Check a layer cache's shapes and dtypes against the data model.
 * @throws ShapeError (also when `layer` is not a LayerCache of this backend), DTypeError, EmptyCacheError (when `requireTokens`).
 */
export function checkLayer<T>(kernels: KVKernels<T>, layer: LayerCache<T>, where: string, requireTokens = false): void {
  if (typeof layer !== 'object' || layer === null) {
    throw new ShapeError(`${where}: layer must be a LayerCache { keys, values, positions, counts, scores }, got ${layer === null ? 'null' : typeof layer}`, { field: 'layer' });
  }
  const ks = dims(kernels, layer.keys, where, 'keys');
  if (ks.length !== 3) throw new ShapeError(`${where}: keys must be [kvHeads, length, headDim], got [${ks.join(', ')}]`, { field: 'keys', shape: ks });
  const [h, n] = ks as [number, number, number];
  const vs = dims(kernels, layer.values, where, 'values');
  if (!sameShape(vs, ks)) throw new ShapeError(`${where}: values [${vs.join(', ')}] differ from keys [${ks.join(', ')}]`, { field: 'values' });
  for (const f of ['positions', 'counts', 'scores'] as const) {
    const s = dims(kernels, layer[f], where, f);
    if (!sameShape(s, [h, n])) throw new ShapeError(`${where}: ${f} must be [${h}, ${n}], got [${s.join(', ')}]`, { field: f, shape: s });
  }
  const want = { keys: 'float32', values: 'float32', positions: 'int32', counts: 'int32', scores: 'float32' } as const;
  for (const [f, d] of Object.entries(want) as [keyof typeof want, string][]) {
    const got = kernels.dtypeOf(layer[f]);
    if (got !== d) throw new DTypeError(`${where}: ${f}`, got, [d]);
  }
  if (requireTokens && (n === 0 || h === 0)) throw new EmptyCacheError(where);
}

/**
 * Refuse NaN, infinities and magnitudes of {@link VALUE_LIMIT} or more in a float32 tensor (in slots
 * `from..` of each head when `from` is given).
 * @throws NonFiniteError or ValueRangeError naming `field`.
 */
async function checkValues<T>(kernels: KVKernels<T>, tensor: T, field: string, where: string, from?: number): Promise<void> {
  if (await kernels.allFinite(tensor, VALUE_LIMIT, from)) return;
  if (!(await kernels.allFinite(tensor, undefined, from))) throw new NonFiniteError(field, { where });
  throw new ValueRangeError(field, VALUE_LIMIT, { where });
}

/**
 * Positions strictly increase along each head, counts are at least 1, and the counts of a head sum to at
 * most int32's maximum (the largest count any merge of them can produce). With `inPlace` (a cache a decode
 * step edited in place), positions are distinct in any order and a spare last row is allowed.
 * @throws ShapeError naming the head and slot.
 */
async function checkSlots<T>(kernels: KVKernels<T>, layer: LayerCache<T>, h: number, n: number, where: string, inPlace: boolean): Promise<void> {
  const [pos, cnt] = await Promise.all([kernels.toHost(layer.positions), kernels.toHost(layer.counts)]);
  const p = pos.data;
  const c = cnt.data;
  let unordered = false;
  for (let head = 0; head < h; head++) {
    const base = head * n;
    let total = 0;
    for (let j = 0; j < n; j++) {
      const count = c[base + j]!;
      if (inPlace && count === 0 && j === n - 1 && p[base + j] === SPARE_POSITION) continue;
      if (count < 1) throw new ShapeError(`${where}: counts[${head}, ${j}] = ${count} must be >= 1 (a slot stands for at least one token)`, { field: 'counts', head, index: j, value: count });
      total += count;
      if (j > 0 && p[base + j]! <= p[base + j - 1]!) {
        unordered = true;
        if (inPlace) continue;
        throw new ShapeError(`${where}: positions[${head}, ${j}] = ${p[base + j]} must be greater than positions[${head}, ${j - 1}] = ${p[base + j - 1]} (slots are sorted by position, without repeats)`, {
          field: 'positions',
          head,
          index: j,
        });
      }
    }
    if (total > INT32_MAX) {
      throw new ShapeError(`${where}: the counts of head ${head} sum to ${total}, above int32's ${INT32_MAX}; merging these slots would overflow the merged count`, {
        field: 'counts',
        head,
        total,
        allowed: `sum <= ${INT32_MAX}`,
      });
    }
  }
  // A cache edited in place (ctx.inPlace) need not be in position order, but its positions must be distinct.
  if (unordered) checkDistinct(p as Int32Array, c as Int32Array, h, n, where);
}

/**
 * Positions of each head distinct (spare rows aside), in any order: the check of an in-place cache.
 * @throws ShapeError naming the head and the repeated position.
 */
function checkDistinct(p: Int32Array, c: Int32Array, h: number, n: number, where: string): void {
  const row = new Int32Array(n);
  for (let head = 0; head < h; head++) {
    let m = 0;
    for (let j = 0; j < n; j++) if (c[head * n + j] !== 0) row[m++] = p[head * n + j]!;
    const live = row.subarray(0, m).sort();
    for (let j = 1; j < m; j++) {
      if (live[j] === live[j - 1]) throw new ShapeError(`${where}: position ${live[j]} appears twice in head ${head} (slots stand for distinct tokens)`, { field: 'positions', head, value: live[j] });
    }
  }
}

/**
 * Scan keys and values of the `tail` newest slots of every head (all of them when `tail >= n`). The
 * kernel reads those slots in place (`allFinite`'s `from`): no index to upload, check and gather.
 */
async function checkKeysValues<T>(kernels: KVKernels<T>, layer: LayerCache<T>, n: number, tail: number, where: string): Promise<void> {
  if (tail <= 0) return;
  const from = tail >= n ? undefined : n - tail;
  await checkValues(kernels, layer.keys, 'keys', where, from);
  await checkValues(kernels, layer.values, 'values', where, from);
}

/**
 * Wrap a policy so every call validates its inputs first: the call's arguments, shapes and dtypes of
 * every tensor it receives (layer and observations), empty caches, the budget, the observations the
 * policy declared it needs, and (per {@link GuardOptions.finiteCheck}) contents: NaN, infinities and
 * magnitudes of {@link VALUE_LIMIT} or more in keys, values, scores and observations; positions strictly
 * increasing per head; counts >= 1 whose per-head sum fits int32. Errors are typed and name the field,
 * so a bad input never surfaces as NaN or a crash deep in a kernel.
 */
export function guardPolicy(policy: KVCachePolicy, options: GuardOptions = {}): KVCachePolicy {
  const finite = options.finiteCheck ?? 'prefill';
  const check = async <T>(phase: 'prefill' | 'step', layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>) => {
    const where = `${policy.name}.${phase}`;
    if (typeof ctx !== 'object' || ctx === null || typeof ctx.kernels !== 'object' || ctx.kernels === null) {
      throw new ShapeError(`${where}: ctx must be a PolicyContext with the backend's kernels (see createContext)`, { field: 'ctx' });
    }
    const k = ctx.kernels;
    checkLayer(k, layer, where, true);
    const [h, n, d] = k.shapeOf(layer.keys) as [number, number, number];
    if (typeof ctx.budget !== 'number' || !Number.isInteger(ctx.budget) || ctx.budget < 1) {
      throw new BudgetError(`${where}: budget ${ctx.budget} must be a positive integer slot count`, { field: 'budget', value: ctx.budget });
    }
    if (phase === 'prefill' && ctx.budget > n) {
      throw new BudgetError(`${where}: budget of ${ctx.budget} slots is larger than the cache (${n} slots)`, { field: 'budget', value: ctx.budget, allowed: `1..${n}` });
    }
    const fresh = ctx.newTokens;
    if (typeof fresh !== 'number' || !Number.isInteger(fresh) || fresh < 0) {
      throw new ShapeError(`${where}: ctx.newTokens ${String(fresh)} must be a non-negative integer`, { field: 'ctx.newTokens', value: fresh });
    }
    if (typeof observed !== 'object' || observed === null) {
      throw new ShapeError(`${where}: observed must be an object of observations (possibly empty), got ${observed === null ? 'null' : typeof observed}`, { field: 'observed' });
    }
    for (const need of policy.needs) if (observed[need] === undefined) throw new MissingObservationError(policy.name, need);
    for (const f of ['attention', 'lastAttention'] as const) {
      const t = observed[f];
      if (t === undefined) continue;
      const s = dims(k, t, where, `observed.${f}`);
      if (!sameShape(s, [h, n])) throw new ShapeError(`${where}: observed.${f} must be [${h}, ${n}], got [${s.join(', ')}]`, { field: `observed.${f}` });
      const dt = k.dtypeOf(t);
      if (dt !== 'float32') throw new DTypeError(`${where}: observed.${f}`, dt, ['float32']);
    }
    if (observed.queries !== undefined) {
      const s = dims(k, observed.queries, where, 'observed.queries');
      if (s.length !== 3 || s[0]! === 0 || s[0]! % h !== 0 || s[2] !== d) {
        throw new ShapeError(`${where}: observed.queries must be [queryHeads, n, ${d}] with queryHeads a positive multiple of ${h}, got [${s.join(', ')}]`, { field: 'observed.queries', shape: s });
      }
      const dt = k.dtypeOf(observed.queries);
      if (dt !== 'float32') throw new DTypeError(`${where}: observed.queries`, dt, ['float32']);
    }
    if (finite === 'never') return;
    await checkValues(k, layer.scores, 'scores', where);
    for (const f of ['attention', 'lastAttention', 'queries'] as const) {
      const t = observed[f];
      if (t !== undefined) await checkValues(k, t, `observed.${f}`, where);
    }
    await checkSlots(k, layer, h, n, where, ctx.inPlace === true);
    const whole = finite === 'always' || phase === 'prefill';
    await checkKeysValues(k, layer, n, whole ? n : Math.min(fresh, n), where);
  };
  return {
    specificationVersion: policy.specificationVersion,
    name: policy.name,
    needs: policy.needs,
    async prefill(layer, observed, ctx) {
      await check('prefill', layer, observed, ctx);
      return policy.prefill(layer, observed, ctx);
    },
    async step(layer, observed, ctx) {
      await check('step', layer, observed, ctx);
      return policy.step(layer, observed, ctx);
    },
  };
}
