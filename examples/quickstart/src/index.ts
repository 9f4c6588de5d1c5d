/**
 * @packageDocumentation
 * kvfold quickstart: generate a KV cache with realistic key locality, compress it with every built-in
 * policy at the same budget, and print what each kept, merged, and how far its attention output moved.
 */
import { KVFold, createContext, layerFromHost, layerToHost, resolveBudget, type HostLayer } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import baselines from '@kvfold/policy-baselines';
import h2o from '@kvfold/policy-h2o';
import cam from '@kvfold/policy-cam';
import kvmerger from '@kvfold/policy-kvmerger';
import { attentionOutput, relativeError, syntheticLayer } from '@kvfold/testkit';

/** One row of the quickstart table. */
export interface QuickstartRow {
  /** Policy name. */
  readonly policy: string;
  /** Slots kept per head. */
  readonly kept: number;
  /** Slots standing for more than one token. */
  readonly mergedSlots: number;
  /** Largest count of one slot. */
  readonly maxCount: number;
  /** Relative error of attention outputs of probe queries against the full cache. */
  readonly attentionError: number;
  /** Wall time of the prefill compression, ms. */
  readonly ms: number;
}

/** Options of {@link runQuickstart}. */
export interface QuickstartOptions {
  /** Prompt length; default 1024. */
  readonly length?: number;
  /** Budget ratio; default 0.35. */
  readonly budget?: number;
  /** Seed; default 7. */
  readonly seed?: number;
}

/** Compress one generated cache with every registered policy and measure each result. */
export async function runQuickstart(options: QuickstartOptions = {}): Promise<QuickstartRow[]> {
  const length = options.length ?? 1024;
  const seed = options.seed ?? 7;
  const kv = KVFold.create({ plugins: [reference, baselines, h2o, cam, kvmerger] });
  const kernels = await kv.backend('reference');
  const data = syntheticLayer({ heads: 4, queryHeads: 8, length, headDim: 64, queries: 32, seed });
  // Probe queries come from another seed: they were not used to score the tokens.
  const probe = syntheticLayer({ heads: 4, queryHeads: 8, length, headDim: 64, queries: 32, seed: seed + 1 }).queries;
  const probeOf = (l: HostLayer) => attentionOutput(l, probe);
  const fullOut = probeOf(data.layer);
  const budget = resolveBudget(options.budget ?? 0.35, length);
  const rows: QuickstartRow[] = [];
  for (const name of kv.policies.names()) {
    const policy = kv.policy(name);
    const layer = layerFromHost(kernels, data.layer);
    const q = kernels.fromHost(data.queries);
    const qp = kernels.fromHost(data.queryPositions);
    const seen = kernels.observe(layer, q, qp);
    const t0 = performance.now();
    const out = await policy.prefill(layer, { attention: seen.sums, lastAttention: seen.last, queries: q }, createContext({ kernels, budget, promptLength: length, seed }));
    const ms = performance.now() - t0;
    const host = await layerToHost(kernels, out);
    const counts = Array.from(host.counts.data);
    rows.push({
      policy: name,
      kept: host.keys.shape[1]!,
      mergedSlots: counts.filter((c) => c > 1).length,
      maxCount: Math.max(...counts),
      attentionError: relativeError(fullOut, probeOf(host)),
      ms,
    });
  }
  return rows;
}

/** Render rows as a Markdown table. */
export function formatTable(rows: readonly QuickstartRow[]): string {
  const lines = ['| policy | slots kept / head | merged slots (all heads) | max count | attention output rel. error | prefill ms |', '|---|---:|---:|---:|---:|---:|'];
  for (const r of rows) lines.push(`| ${r.policy} | ${r.kept} | ${r.mergedSlots} | ${r.maxCount} | ${r.attentionError.toFixed(4)} | ${r.ms.toFixed(1)} |`);
  return lines.join('\n');
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const rows = await runQuickstart();
  console.log('kvfold quickstart: 4 kv heads (8 query heads), 1024 tokens, head dim 64, budget 35%, reference backend\n');
  console.log(formatTable(rows));
  console.log('\nattention output rel. error: ||o_full - o_compressed|| / ||o_full|| over 32 probe queries per head not used for scoring.');
}
