import { SPECIAL_TOKENS } from '../config.js';
import type { PlacedSample } from './compose.js';
import { multiNeedleSample } from './multi-needle.js';
import type { Rng } from '@kvfold/core';
import { intIn } from './random.js';
import { passkeySample, recallSample, type TaskSample } from './tasks.js';
import { ANSWER_WEIGHT, CLOSE_WEIGHT, encodeBytes } from './training.js';
import { variableTrackingSample } from './variable-tracking.js';
import { wordNeedleSample } from './word-needle.js';

/** Tasks a training mix can draw rows from. */
export const MIX_TASKS = ['passkey', 'recall', 'word-needle', 'passkey-prose', 'multi-needle-one', 'multi-needle-all', 'variable-tracking'] as const;

/** One task of {@link MIX_TASKS}. */
export type MixTask = (typeof MIX_TASKS)[number];

/** Relative weight of each task in a training mix (tasks left out get none). */
export type Mix = Partial<Record<MixTask, number>>;

/**
 * Parse `passkey=1,recall=2,variable-tracking=1` into a mix.
 * @throws RangeError naming the allowed tasks for an unknown name, a weight that is not a finite
 *   number >= 0, or a mix whose weights sum to 0.
 */
export function parseMix(text: string): Mix {
  const mix: Mix = {};
  for (const part of text.split(',').filter((p) => p.trim().length > 0)) {
    const [name, w] = part.split('=').map((x) => x.trim());
    if (!(MIX_TASKS as readonly string[]).includes(name)) throw new RangeError(`mix: unknown task ${JSON.stringify(name)}; allowed: ${MIX_TASKS.join(', ')}`);
    const weight = w === undefined ? 1 : Number(w);
    if (!Number.isFinite(weight) || weight < 0) throw new RangeError(`mix: weight of ${name} must be a number >= 0, got ${JSON.stringify(w)}`);
    mix[name as MixTask] = weight;
  }
  if (Object.values(mix).reduce((a, b) => a + (b ?? 0), 0) <= 0) throw new RangeError(`mix: weights must sum to more than 0, got ${JSON.stringify(text)}`);
  return mix;
}

/** Shortest row a task fits in (with the most needles or statements the mix draws at that length). */
export const MIN_ROW_LENGTH: Record<MixTask, number> = {
  passkey: 100,
  recall: 100,
  'word-needle': 160,
  'passkey-prose': 100,
  'multi-needle-one': 256,
  'multi-needle-all': 256,
  'variable-tracking': 100,
};

/** A training row of a mixed task. */
export interface MixedRow {
  /** Token ids, length L + 1 (inputs ids[0..L), targets ids[1..L]). */
  ids: Int32Array;
  /** Loss weight of target t (= ids[t + 1]), length L. */
  weights: Float32Array;
  /** Which task produced the row. */
  kind: MixTask;
}

/** The sample of `task` for `seed` with a prompt of `length` bytes; the answer does not depend on `length`. */
function sampleOf(task: MixTask, rng: Rng, rowLength: number, seed: number): (length: number) => TaskSample | PlacedSample {
  const filler = rng.next() < 0.5 ? ('grammar' as const) : ('prose' as const);
  const common = { seed, filler, split: 'train' as const };
  const depth = rng.next();
  switch (task) {
    case 'passkey':
      return (length) => passkeySample({ length, depth, seed });
    case 'recall': {
      const pairs = intIn(rng, 2, Math.min(6, 1 + Math.floor(rowLength / 128)));
      return (length) => recallSample({ length, pairs, seed });
    }
    case 'word-needle': {
      const words = intIn(rng, 2, 4);
      return (length) => wordNeedleSample({ ...common, length, depth, words });
    }
    case 'passkey-prose':
      return (length) => wordNeedleSample({ ...common, filler: 'prose', length, depth, value: 'digits' });
    case 'multi-needle-one':
    case 'multi-needle-all': {
      const needles = intIn(rng, 2, rowLength >= 256 ? 4 : 2);
      const query = task === 'multi-needle-one' ? ('one' as const) : ('all' as const);
      return (length) => multiNeedleSample({ ...common, length, needles, query });
    }
    case 'variable-tracking': {
      let hops = intIn(rng, 1, 3);
      let chains = intIn(rng, 1, 3);
      // A statement takes about 18 bytes and the question about 40: shrink until the row holds them.
      while ((hops + 1) * chains * 20 + 60 > rowLength && (chains > 1 || hops > 1)) {
        if (chains > 1) chains--;
        else hops--;
      }
      return (length) => variableTrackingSample({ ...common, length, hops, chains });
    }
  }
}

/**
 * One training row of exactly `length` positions from a task drawn with the mix's weights (a row
 * shorter than the task's {@link MIN_ROW_LENGTH} holds a passkey instead): bos +
 * prompt + answer + "." + eos; answer bytes weigh {@link ANSWER_WEIGHT}, the closing "." and eos
 * {@link CLOSE_WEIGHT}, and the repeated key of passkey-style needles ("Remember it. K") weighs
 * {@link ANSWER_WEIGHT} too (the short-range copy signal the model card describes). Prose filler comes
 * from the `train` split; each row's filler is grammar or prose with equal odds.
 */
export function mixedTrainingRow(rng: Rng, length: number, mix: Mix): MixedRow {
  const tasks = MIX_TASKS.filter((t) => (mix[t] ?? 0) > 0);
  const total = tasks.reduce((a, t) => a + (mix[t] ?? 0), 0);
  let r = rng.next() * total;
  let kind = tasks[tasks.length - 1];
  for (const t of tasks) {
    r -= mix[t] ?? 0;
    if (r < 0) {
      kind = t;
      break;
    }
  }
  // Three named needles and their question need about 200 bytes: shorter rows hold a passkey instead.
  if (length < MIN_ROW_LENGTH[kind]) kind = 'passkey';
  const seed = rng.int(2 ** 32);
  const make = sampleOf(kind, rng, length, seed);
  const ans = encodeBytes(make(length).answer);
  const promptLen = length - ans.length - 2;
  const s = make(promptLen);
  const body = encodeBytes(s.prompt);
  if (body.length !== promptLen || s.answer.length !== ans.length) throw new Error(`mixedTrainingRow: ${kind} prompt is ${body.length} bytes, expected ${promptLen}`);
  const ids = Int32Array.from([SPECIAL_TOKENS.bos, ...body, ...ans, 46, SPECIAL_TOKENS.eos]);
  const weights = new Float32Array(length).fill(1);
  // Target index t predicts ids[t + 1]; the answer starts at ids index 1 + promptLen.
  for (let j = 0; j < ans.length; j++) weights[promptLen + j] = ANSWER_WEIGHT;
  const rep = s.prompt.indexOf(`Remember it. ${s.answer} `);
  if (rep >= 0) for (let j = 0; j < ans.length; j++) weights[rep + 13 + j] = ANSWER_WEIGHT;
  weights[promptLen + ans.length] = CLOSE_WEIGHT;
  weights[promptLen + ans.length + 1] = CLOSE_WEIGHT;
  return { ids, weights, kind };
}
