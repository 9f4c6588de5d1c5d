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
import { attentionOutput, probeQueries, relativeError, syntheticLayer } from '@kvfold/testkit';

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
  /** The same with proportional attention (log(count) added to merged slots' logits). */
  readonly proportionalError: number;
  /** Wall time of the prefill compression, ms. */
  readonly ms: number;
  /** What head 0 kept, in slot order: runs of unmerged positions as `a-b`, merged slots as `pivot×count`. */
  readonly head0: string;
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
  const shape = { heads: 4, queryHeads: 8, length, headDim: 64, queries: Math.max(8, length >> 2), seed };
  const data = syntheticLayer(shape);
  // Probe queries are drawn with another seed: they were not used to score the tokens.
  const probe = probeQueries(shape, 32, seed + 1);
  const probeOf = (l: HostLayer, proportional = false) => attentionOutput(l, probe, proportional);
  const fullOut = probeOf(data.layer);
  const budget = resolveBudget(options.budget ?? 0.35, length);
  const rows: QuickstartRow[] = [];
  // `chain` only composes the others (see examples/compose), so it has no row of its own.
  const variants: { label: string; name: string; options?: Record<string, unknown> }[] = kv.policies
    .names()
    .filter((name) => name !== 'chain')
    .map((name) => ({ label: name, name }));
  // The paper scales merged values by |S| for plain attention; the alternative pairs unscaled values with proportional attention.
  variants.push({ label: 'kvmerger valueScale=none', name: 'kvmerger', options: { valueScale: 'none' } });
  for (const { label, name, options } of variants) {
    const policy = kv.policy(name, options);
    const layer = layerFromHost(kernels, data.layer);
    const q = kernels.fromHost(data.queries);
    const qp = kernels.fromHost(data.queryPositions);
    const seen = kernels.observe(layer, q, qp);
    const t0 = performance.now();
    const out = await policy.prefill(layer, { ...seen, queries: q }, createContext({ kernels, budget, promptLength: length, seed }));
    const ms = performance.now() - t0;
    const host = await layerToHost(kernels, out);
    const counts = Array.from(host.counts.data);
    rows.push({
      policy: label,
      kept: host.keys.shape[1]!,
      mergedSlots: counts.filter((c) => c > 1).length,
      maxCount: Math.max(...counts),
      attentionError: relativeError(fullOut, probeOf(host)),
      proportionalError: relativeError(fullOut, probeOf(host, true)),
      ms,
      head0: describeHead(host, 0),
    });
  }
  return rows;
}

/**
 * Summarise what head `h` of a layer holds, in slot order: consecutive unmerged positions collapse to
 * `a-b`, a merged slot shows as `pivot×count`. Example: `0-3 17 40×6 46-52`.
 */
export function describeHead(layer: HostLayer, h: number): string {
  const len = layer.positions.shape[1]!;
  const pos = layer.positions.data.subarray(h * len, (h + 1) * len);
  const cnt = layer.counts.data.subarray(h * len, (h + 1) * len);
  const parts: string[] = [];
  for (let i = 0; i < len; ) {
    if (cnt[i]! > 1) {
      parts.push(`${pos[i]}×${cnt[i]}`);
      i++;
      continue;
    }
    let j = i;
    while (j + 1 < len && cnt[j + 1] === 1 && pos[j + 1] === pos[j]! + 1) j++;
    parts.push(j > i ? `${pos[i]}-${pos[j]}` : `${pos[i]}`);
    i = j + 1;
  }
  return parts.join(' ');
}

/** Render rows as a Markdown table. */
export function formatTable(rows: readonly QuickstartRow[]): string {
  const lines = ['| policy | slots kept / head | merged slots (all heads) | max count | attn. output rel. error | same, proportional attn. | prefill ms |', '|---|---:|---:|---:|---:|---:|---:|'];
  for (const r of rows) lines.push(`| ${r.policy} | ${r.kept} | ${r.mergedSlots} | ${r.maxCount} | ${r.attentionError.toFixed(4)} | ${r.proportionalError.toFixed(4)} | ${r.ms.toFixed(1)} |`);
  return lines.join('\n');
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const rows = await runQuickstart();
  console.log('kvfold quickstart: 4 kv heads (8 query heads), 1024 tokens, head dim 64, budget 35%, reference backend\n');
  console.log(formatTable(rows));
  console.log('\nattn. output rel. error: ||o_full - o_compressed|| / ||o_full|| over 32 held-out probe queries per query head.');
  console.log('proportional attn.: log(count) added to the logits of merged slots (counts are 1 for every policy but kvmerger).');
  console.log('Synthetic data: keys drift along the sequence; a few tokens per head draw most attention (lognormal importance).');
  console.log('\nWhat head 0 kept (positions; a-b = a run of unmerged tokens, p×c = a merged slot with pivot p standing for c tokens):');
  const cut = (t: string) => (t.length > 160 ? `${t.slice(0, 110)} ... ${t.slice(-45)}` : t);
  for (const r of rows) console.log(`  ${r.policy.padEnd(24)} ${cut(r.head0)}`);
}
