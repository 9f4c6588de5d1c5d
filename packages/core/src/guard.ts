import { DTypeError, EmptyCacheError, MissingObservationError, NonFiniteError, ShapeError, BudgetError } from './errors.js';
import type { KVKernels, LayerCache } from './kernels.js';
import type { KVCachePolicy, Observation, PolicyContext } from './policy.js';

/** What {@link guardPolicy} checks on every call. */
export interface GuardOptions {
  /** Scan keys and values for NaN/Inf: at prefill only (default), on every call, or never. */
  readonly finiteCheck?: 'prefill' | 'always' | 'never';
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/**
 * Check a layer cache's shapes and dtypes against the data model.
 * @throws ShapeError, DTypeError, EmptyCacheError (when `requireTokens`).
 */
export function checkLayer<T>(kernels: KVKernels<T>, layer: LayerCache<T>, where: string, requireTokens = false): void {
  const ks = kernels.shapeOf(layer.keys);
  if (ks.length !== 3) throw new ShapeError(`${where}: keys must be [kvHeads, length, headDim], got [${ks.join(', ')}]`, { field: 'keys', shape: ks });
  const [h, n] = ks as [number, number, number];
  if (!sameShape(kernels.shapeOf(layer.values), ks)) {
    throw new ShapeError(`${where}: values [${kernels.shapeOf(layer.values).join(', ')}] differ from keys [${ks.join(', ')}]`, { field: 'values' });
  }
  for (const f of ['positions', 'counts', 'scores'] as const) {
    const s = kernels.shapeOf(layer[f]);
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
 * Wrap a policy so every call validates its inputs first: shapes, dtypes, empty caches, non-finite
 * keys/values, the budget, and the observations the policy declared it needs. Errors are typed and name
 * the field, so a bad input never surfaces as NaN or a crash deep in a kernel.
 */
export function guardPolicy(policy: KVCachePolicy, options: GuardOptions = {}): KVCachePolicy {
  const finite = options.finiteCheck ?? 'prefill';
  const check = async <T>(phase: 'prefill' | 'step', layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>) => {
    const where = `${policy.name}.${phase}`;
    const k = ctx.kernels;
    checkLayer(k, layer, where, true);
    const [h, n] = k.shapeOf(layer.keys) as [number, number];
    if (!Number.isInteger(ctx.budget) || ctx.budget < 1) {
      throw new BudgetError(`${where}: budget ${ctx.budget} must be a positive integer slot count`, { field: 'budget', value: ctx.budget });
    }
    if (phase === 'prefill' && ctx.budget > n) {
      throw new BudgetError(`${where}: budget of ${ctx.budget} slots is larger than the cache (${n} slots)`, { field: 'budget', value: ctx.budget, allowed: `1..${n}` });
    }
    for (const need of policy.needs) {
      const t = observed[need];
      if (t === undefined) throw new MissingObservationError(policy.name, need);
      if (need !== 'queries' && !sameShape(k.shapeOf(t), [h, n])) {
        throw new ShapeError(`${where}: observed.${need} must be [${h}, ${n}], got [${k.shapeOf(t).join(', ')}]`, { field: `observed.${need}` });
      }
    }
    if (finite === 'always' || (finite === 'prefill' && phase === 'prefill')) {
      if (!(await k.allFinite(layer.keys))) throw new NonFiniteError('keys', { where });
      if (!(await k.allFinite(layer.values))) throw new NonFiniteError('values', { where });
    }
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
