import type { PlacedSample } from './compose.js';
import { MIX_TASKS, type MixTask } from './mix.js';
import { multiNeedleSample } from './multi-needle.js';
import { PASSKEY_QUESTION, passkeySample, recallSample } from './tasks.js';
import { variableTrackingSample } from './variable-tracking.js';
import { wordNeedleSample } from './word-needle.js';

/** Needle depths the evaluation cycles through (sample i sits at depth `EVAL_DEPTHS[i % 5]`). */
export const EVAL_DEPTHS = [0, 0.25, 0.5, 0.75, 1] as const;

/**
 * What each task's evaluation cell holds (one fixed setting per task, so cells are comparable across
 * models and runs). Every new task uses prose filler from the held-out `eval` split.
 */
export const EVAL_SETTINGS: Record<MixTask, string> = {
  passkey: 'classic passkey, grammar filler, 5 digits, depths 0/25/50/75/100%',
  recall: 'associative recall, grammar filler, 4 pairs (chance 25%)',
  'word-needle': 'passkey whose key is 3 filler words, prose filler, depths 0/25/50/75/100%',
  'passkey-prose': 'classic passkey (5 digits) on prose filler, depths 0/25/50/75/100%',
  'multi-needle-one': '3 named needles at spread depths, asked for one (chance 33%), prose filler',
  'multi-needle-all': '3 named needles at spread depths, asked for all in order, prose filler',
  'variable-tracking': '2 chains of 2 hops (3 statements each), asked for one chain, prose filler',
};

/** Seed of sample `index` of a cell: distinct per task, length and base seed. */
export function evalSeed(task: MixTask, length: number, index: number, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (const ch of `${task}|${length}|${index}`) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}

/**
 * Sample `index` of the evaluation cell (task, length), as a {@link PlacedSample} (the classic passkey
 * and recall samples get their question offsets filled in).
 * @throws RangeError for an unknown task or a length too short for the task.
 */
export function evalTaskSample(task: MixTask, length: number, index: number, seed = 0): PlacedSample {
  if (!(MIX_TASKS as readonly string[]).includes(task)) throw new RangeError(`unknown task ${JSON.stringify(task)}; allowed: ${MIX_TASKS.join(', ')}`);
  const s = evalSeed(task, length, index, seed);
  const depth = EVAL_DEPTHS[index % EVAL_DEPTHS.length];
  const prose = { filler: 'prose' as const, split: 'eval' as const };
  switch (task) {
    case 'passkey': {
      const p = passkeySample({ length, depth, seed: s });
      return { ...p, task, questionOffset: p.prompt.length - PASSKEY_QUESTION.length, factOffsets: [p.needleOffset], chance: 0 };
    }
    case 'recall': {
      const r = recallSample({ length, pairs: 4, seed: s });
      const facts: number[] = [];
      for (let i = r.prompt.indexOf('Key '); i >= 0; i = r.prompt.indexOf('Key ', i + 1)) facts.push(i);
      return { prompt: r.prompt, answer: r.answer, needleOffset: r.needleOffset, task, questionOffset: r.prompt.lastIndexOf(' Which value has key '), factOffsets: facts, chance: r.chance };
    }
    case 'word-needle':
      return wordNeedleSample({ ...prose, length, depth, seed: s, words: 3 });
    case 'passkey-prose':
      return wordNeedleSample({ ...prose, length, depth, seed: s, value: 'digits' });
    case 'multi-needle-one':
      return multiNeedleSample({ ...prose, length, seed: s, needles: 3, query: 'one' });
    case 'multi-needle-all':
      return multiNeedleSample({ ...prose, length, seed: s, needles: 3, query: 'all' });
    case 'variable-tracking':
      return variableTrackingSample({ ...prose, length, seed: s, hops: 2, chains: 2 });
  }
}
