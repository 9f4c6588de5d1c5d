import { SPECIAL_TOKENS } from '../config.js';
import { type Rng } from '@kvfold/core';
import { intIn } from './random.js';
import { passkeySample, recallSample, type TaskSample } from './tasks.js';

/** Loss weight of each answer digit relative to an ordinary token (documented in the model card). */
export const ANSWER_WEIGHT = 8;
/** Loss weight of the "." and eos closing an answer. */
export const CLOSE_WEIGHT = 2;

/** One training row: `length + 1` token ids (bos first) and `length` target weights. */
export interface TrainingRow {
  /** Token ids, length L + 1 (inputs are ids[0..L), targets ids[1..L]). */
  ids: Int32Array;
  /** Loss weight of target t (= ids[t + 1]), length L. */
  weights: Float32Array;
  /** Which task produced the row. */
  kind: 'passkey' | 'recall';
}

/** Encode ASCII text as byte ids. */
export function encodeBytes(text: string): number[] {
  return Array.from(new TextEncoder().encode(text));
}

/**
 * Draw one training row of exactly `length` positions: bos + task prompt + answer + "." + eos, with
 * answer digits weighted {@link ANSWER_WEIGHT}. A `recallShare` of the rows are recall (2-6 pairs), the
 * rest passkey (random depth); default half and half.
 */
export function trainingRow(rng: Rng, length: number, recallShare = 0.5): TrainingRow {
  const seed = rng.int(2 ** 32);
  const kind = rng.next() < 1 - recallShare ? 'passkey' : 'recall';
  const answerLen = kind === 'passkey' ? 5 : 4;
  const promptLen = length - answerLen - 2;
  let s: TaskSample;
  if (kind === 'passkey') s = passkeySample({ length: promptLen, depth: rng.next(), seed });
  else s = recallSample({ length: promptLen, pairs: intIn(rng, 2, Math.min(6, 1 + Math.floor(length / 128))), seed });
  const body = encodeBytes(s.prompt);
  if (body.length !== promptLen) throw new Error(`trainingRow: prompt is ${body.length} bytes, expected ${promptLen}`);
  const ans = encodeBytes(s.answer);
  const ids = Int32Array.from([SPECIAL_TOKENS.bos, ...body, ...ans, 46, SPECIAL_TOKENS.eos]);
  const weights = new Float32Array(length).fill(1);
  // target index t predicts ids[t + 1]; answer starts at ids index 1 + promptLen.
  for (let j = 0; j < ans.length; j++) weights[promptLen + j] = ANSWER_WEIGHT;
  if (kind === 'passkey') {
    // The needle repeats the key ("Remember it. K is ..."): weighting that copy too gives an early,
    // short-range copying signal that the long-range retrieval builds on.
    const rep = s.prompt.indexOf(`Remember it. ${s.answer}`);
    if (rep >= 0) for (let j = 0; j < ans.length; j++) weights[rep + 13 + j] = ANSWER_WEIGHT;
  }
  weights[promptLen + ans.length] = CLOSE_WEIGHT;
  weights[promptLen + ans.length + 1] = CLOSE_WEIGHT;
  return { ids, weights, kind };
}
