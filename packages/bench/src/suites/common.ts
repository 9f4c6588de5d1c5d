import type { TextTokenizer } from '@kvfold/runtime';
import type { Variant } from '../config.js';
import type { ItemRecord } from '../store.js';
import type { SuiteContext } from '../suite.js';

/**
 * One aggregate per variant, in the config's order: `summarise` gets the variant and the data of its
 * records (an empty list when it has none). Records without a variant are left out.
 */
export function perVariant<D, R>(records: readonly ItemRecord[], variants: readonly Variant[], summarise: (variant: Variant, items: D[]) => R): R[] {
  const byVariant = new Map<string, D[]>();
  for (const r of records) {
    if (r.variant === undefined) continue;
    const list = byVariant.get(r.variant) ?? [];
    list.push(r.data as D);
    byVariant.set(r.variant, list);
  }
  return variants.map((v) => summarise(v, byVariant.get(v.id) ?? []));
}

/** True when any variant's policy asks the runtime for queries (captures then keep them). */
export function variantsNeedQueries(ctx: SuiteContext, variants: readonly Variant[]): boolean {
  return variants.some((v) => ctx.policy(v).needs.includes('queries'));
}

/**
 * Token ids of a generated text with at least `tokens` tokens: the text is generated at `tokens`
 * characters and grown until the tokenizer yields enough (byte tokenizers need no growth).
 */
export function tokensOf(tokenizer: TextTokenizer, tokens: number, make: (chars: number) => string): number[] {
  let chars = tokens;
  for (let i = 0; i < 12; i++) {
    const ids = tokenizer.encode(make(chars));
    if (ids.length >= tokens) return ids;
    chars = Math.ceil((chars * tokens * 1.1) / Math.max(1, ids.length)) + 16;
  }
  throw new RangeError(`could not generate a text of ${tokens} tokens`);
}

/** `0.35` → `35%`, NaN → `–`. */
export function pct(x: number, digits = 0): string {
  return Number.isFinite(x) ? `${(x * 100).toFixed(digits)}%` : '–';
}

/** A number with `digits` significant decimals, NaN → `–`. */
export function num(x: number, digits = 3): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '–';
}

/** `n=40` when every row counted the same number of items, else the range `n=12–40`. */
export function nText(counts: readonly number[]): string {
  const lo = Math.min(...counts);
  const hi = Math.max(...counts);
  return counts.length === 0 ? 'n=0' : lo === hi ? `n=${hi}` : `n=${lo}–${hi}`;
}

/** Bytes in KiB/MiB. */
export function bytes(n: number): string {
  if (!Number.isFinite(n)) return '–';
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(2)} MiB`;
  return `${(n / 1024).toFixed(1)} KiB`;
}

/** Milliseconds with a unit that fits. */
export function ms(x: number): string {
  if (!Number.isFinite(x)) return '–';
  if (x >= 1000) return `${(x / 1000).toFixed(2)} s`;
  if (x >= 10) return `${x.toFixed(1)} ms`;
  return `${x.toFixed(2)} ms`;
}

/** A Markdown table. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], align?: readonly ('l' | 'r')[]): string {
  const a = align ?? header.map((_, i) => (i === 0 ? 'l' : 'r'));
  const sep = a.map((x) => (x === 'r' ? '---:' : '---'));
  return [header, sep, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

/** Order variants by the sweep: label order of first appearance, then budget descending. */
export function variantOrder(variants: readonly Variant[]): Map<string, number> {
  return new Map(variants.map((v, i) => [v.id, i]));
}

/** Policy labels of the sweep in order (the color domain of every plot, so a policy keeps its color). */
export function sweepLabels(variants: readonly Variant[]): string[] {
  return [...new Set(variants.map((v) => v.label))];
}

/** Vega-Lite color channel by policy label with a fixed domain (same colors in every figure). */
export function policyColor(variants: readonly Variant[]): Record<string, unknown> {
  return { field: 'policy', type: 'nominal', scale: { domain: sweepLabels(variants), scheme: 'category10' }, title: 'policy' };
}

/** The variants that run on the tfjs runtime (the suites that support no other runtime use only these). */
export function tfjsVariants(variants: readonly Variant[]): Variant[] {
  return variants.filter((v) => v.runtime === 'tfjs');
}
