import { ConfigError } from '../errors.js';
import { layerTensors, type LayerCache } from '../kernels.js';
import { SPECIFICATION_VERSION, type KVCachePolicy, type Observation, type PolicyContext } from '../policy.js';

/**
 * Policies applied one after the other to the same layer and budget (kvpress's `ComposedPress`): the
 * first receives the observation; the cache it returns goes to the second, and so on. Observations are
 * aligned with the slots of the cache the first policy received, so the later policies must need none
 * (e.g. KVMerger's paper mode, which may leave more than the budget, followed by `window` or `knorm`).
 * Intermediate caches are released as soon as the next policy has replaced them.
 */
export class ChainPolicy implements KVCachePolicy {
  /** Specification version implemented. */
  readonly specificationVersion = SPECIFICATION_VERSION;
  /** What the first policy needs. */
  readonly needs: KVCachePolicy['needs'];

  /**
   * Chain `policies`.
   * @param name registry name of the chain.
   * @param policies the policies, in order (at least one).
   * @throws ConfigError when the list is empty or a policy after the first needs an observation.
   */
  constructor(
    readonly name: string,
    readonly policies: readonly KVCachePolicy[],
  ) {
    if (policies.length === 0) throw new ConfigError([{ path: '/policies', rule: 'minItems', message: 'needs at least one policy', allowed: { minItems: 1 } }], `options of policy "${name}"`);
    policies.forEach((p, i) => {
      if (i > 0 && p.needs.length > 0) {
        throw new ConfigError(
          [{ path: `/policies/${i}`, rule: 'needs', message: `policy "${p.name}" needs ${p.needs.join(', ')}, which only the first policy of a chain receives; put it first or use a policy that needs nothing` }],
          `options of policy "${name}"`,
        );
      }
    });
    this.needs = policies[0]!.needs;
  }

  /** Each policy's `prefill` in turn. */
  prefill<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.run(layer, observed, ctx, true);
  }

  /** Each policy's `step` in turn. */
  step<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>): Promise<LayerCache<T>> {
    return this.run(layer, observed, ctx, false);
  }

  private async run<T>(layer: LayerCache<T>, observed: Observation<T>, ctx: PolicyContext<T>, prefill: boolean): Promise<LayerCache<T>> {
    let current = layer;
    // The chain hands each policy a cache the next one reads in position order: nothing runs in place.
    const inner: PolicyContext<T> = ctx.inPlace ? { ...ctx, inPlace: false } : ctx;
    for (const [i, p] of this.policies.entries()) {
      const seen = i === 0 ? observed : {};
      const next = prefill ? await p.prefill(current, seen, inner) : await p.step(current, seen, inner);
      // The chain owns intermediate caches (never the caller's `layer`): release what the next one dropped.
      if (current !== layer) {
        const kept = new Set(layerTensors(next));
        const input = new Set(layerTensors(layer));
        ctx.kernels.dispose(...layerTensors(current).filter((t) => !kept.has(t) && !input.has(t)));
      }
      current = next;
    }
    return current;
  }
}
