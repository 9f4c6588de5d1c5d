import { digitsString, layoutPrompt, stratifiedDepths, type FillerChoice, type PlacedSample } from './compose.js';
import { createRng, type Rng } from '@kvfold/core';

/** Options of {@link variableTrackingSample}. */
export interface VariableTrackingOptions extends FillerChoice {
  /** Prompt length in bytes (= tokens); the prompt is exactly this long. */
  length: number;
  /** Links from the queried variable back to the number (1-4, default 2). */
  hops?: number;
  /** Chains in the prompt: the queried one and `chains - 1` distractors (1-3, default 2). */
  chains?: number;
  /** Seed; the same options always give the same sample. */
  seed: number;
  /** Digits of each chain's number (default 5). */
  digits?: number;
}

function varName(rng: Rng): string {
  let s = '';
  for (let i = 0; i < 3; i++) s += String.fromCharCode(65 + rng.int(26));
  return s;
}

/**
 * Variable tracking (RULER-style multi-hop): each chain assigns a number and then passes it on,
 * "VAR QXB = 48213." ... "VAR TEL = QXB." ... "VAR MOR = TEL.", its statements in order at spread
 * depths and interleaved with the distractor chains' statements. The question names the last variable
 * of one chain, "What is the value of VAR MOR? MOR = ", and the answer walks the chain back to the
 * number: "TEL = QXB = 48213".
 *
 * Why it is hard: every hop is a lookup of a three-letter name whose statement can sit anywhere, so a
 * policy must keep all `hops + 1` statements of the queried chain (dropping any one breaks the answer),
 * and the distractor chains look exactly alike. The answer spells out the intermediate names so that
 * each hop is one lookup the model makes while writing, as a small model cannot chain several lookups
 * inside one forward pass; the exact match still needs every hop right.
 */
export function variableTrackingSample(o: VariableTrackingOptions): PlacedSample {
  const hops = o.hops ?? 2;
  const nChains = o.chains ?? 2;
  const digits = o.digits ?? 5;
  if (!Number.isInteger(hops) || hops < 1 || hops > 4) throw new RangeError(`variableTrackingSample: hops must be an integer in [1, 4], got ${hops}`);
  if (!Number.isInteger(nChains) || nChains < 1 || nChains > 3) throw new RangeError(`variableTrackingSample: chains must be an integer in [1, 3], got ${nChains}`);
  if (!Number.isInteger(digits) || digits < 1 || digits > 12) throw new RangeError(`variableTrackingSample: digits must be an integer in [1, 12], got ${digits}`);
  const rng = createRng(o.seed);
  const used = new Set<string>();
  const chains = Array.from({ length: nChains }, () => {
    const names: string[] = [];
    while (names.length < hops + 1) {
      const v = varName(rng);
      if (!used.has(v)) {
        used.add(v);
        names.push(v);
      }
    }
    return { names, value: digitsString(rng, digits) };
  });
  // Statement order: each chain's statements stay in order; which chain speaks next is random.
  const next = chains.map(() => 0);
  const facts: string[] = [];
  while (facts.length < nChains * (hops + 1)) {
    const open = chains.map((_, c) => c).filter((c) => next[c] <= hops);
    const c = open[rng.int(open.length)];
    const i = next[c]++;
    const { names, value } = chains[c];
    facts.push(`VAR ${names[i]} = ${i === 0 ? value : names[i - 1]}.`);
  }
  const target = chains[rng.int(nChains)];
  const last = target.names[hops];
  const question = ` What is the value of VAR ${last}? ${last} = `;
  const depths = stratifiedDepths(rng, facts.length);
  const { prompt, factOffsets, questionOffset } = layoutPrompt({ ...o, facts, depths, question, rng, caller: 'variableTrackingSample' });
  const answer = [...target.names.slice(0, hops).reverse(), target.value].join(' = ');
  return { task: 'variable-tracking', prompt, answer, needleOffset: factOffsets[0], factOffsets, questionOffset, chance: 1 / nChains };
}
