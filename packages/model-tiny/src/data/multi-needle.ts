import { digitsString, layoutPrompt, stratifiedDepths, type FillerChoice, type PlacedSample } from './compose.js';
import { createRng } from '@kvfold/core';
import { pick } from './random.js';

/** Options of {@link multiNeedleSample}. */
export interface MultiNeedleOptions extends FillerChoice {
  /** Prompt length in bytes (= tokens); the prompt is exactly this long. */
  length: number;
  /** Needles in the prompt (2-4, default 3). */
  needles?: number;
  /** `one` (default): ask for the key of one named needle; `all`: ask for every key in prompt order. */
  query?: 'one' | 'all';
  /** Seed; the same options always give the same sample. */
  seed: number;
  /** Digits per key (default 5). */
  digits?: number;
}

/**
 * Names of the needles ("the pass key of the falcon"): distinct words the grammar never produces (a
 * few occur once or twice in the prose, never in the "pass key of the" template).
 */
export const NEEDLE_NAMES = ['falcon', 'copper', 'violet', 'otter', 'comet', 'cedar', 'raven', 'tiger', 'pearl', 'cobalt', 'maple', 'lotus'] as const;

/**
 * Multi-needle retrieval: 2-4 facts "The pass key of the falcon is 48213." at different depths (one
 * per equal stratum of the filler), then either "What is the pass key of the otter? The pass key of
 * the otter is " (`query: "one"`, answer its key) or "What are all the pass keys? The pass keys are "
 * (`query: "all"`, answer "K1, K2, K3" in prompt order).
 *
 * Why it is hard: the needles look alike, so keeping "the digits" is not enough: for `one` a policy
 * must keep the right needle together with its name (the others are distractors that a lossy cache
 * can swap in), and for `all` it must keep every needle, wherever it sits, within one budget.
 */
export function multiNeedleSample(o: MultiNeedleOptions): PlacedSample {
  const n = o.needles ?? 3;
  const query = o.query ?? 'one';
  const digits = o.digits ?? 5;
  if (!Number.isInteger(n) || n < 2 || n > 4) throw new RangeError(`multiNeedleSample: needles must be an integer in [2, 4], got ${n}`);
  if (query !== 'one' && query !== 'all') throw new RangeError(`multiNeedleSample: query must be "one" or "all", got ${JSON.stringify(query)}`);
  if (!Number.isInteger(digits) || digits < 1 || digits > 12) throw new RangeError(`multiNeedleSample: digits must be an integer in [1, 12], got ${digits}`);
  const rng = createRng(o.seed);
  const names: string[] = [];
  while (names.length < n) {
    const w = pick(rng, NEEDLE_NAMES);
    if (!names.includes(w)) names.push(w);
  }
  const keys: string[] = [];
  while (keys.length < n) {
    const k = digitsString(rng, digits);
    if (!keys.includes(k)) keys.push(k);
  }
  const target = rng.int(n);
  const facts = names.map((name, i) => `The pass key of the ${name} is ${keys[i]}.`);
  const question = query === 'one' ? ` What is the pass key of the ${names[target]}? The pass key of the ${names[target]} is ` : ' What are all the pass keys? The pass keys are ';
  const depths = stratifiedDepths(rng, n);
  const { prompt, factOffsets, questionOffset } = layoutPrompt({ ...o, facts, depths, question, rng, caller: 'multiNeedleSample' });
  const answer = query === 'one' ? keys[target] : keys.join(', ');
  let orders = 1;
  for (let i = 2; i <= n; i++) orders *= i;
  return { task: `multi-needle-${query}`, prompt, answer, needleOffset: factOffsets[query === 'one' ? target : 0], factOffsets, questionOffset, chance: query === 'one' ? 1 / n : 1 / orders };
}
