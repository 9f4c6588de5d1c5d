import { SPECIAL_TOKENS } from '../config.js';
import type { Rng } from '@kvfold/core';
import { pick } from './random.js';
import type { MixedRow } from './mix.js';
import { encodeBytes } from './training.js';
import { fillerWords } from './word-needle.js';

/**
 * A copying row (training only, `train.js --copy-share`): a random sequence of filler words, then the
 * same sequence again, bos first, exactly `length` positions. Only the second copy is scored (from its
 * second byte on), so the row teaches one thing: find where the bytes just written occurred before and
 * continue from there (an induction head). The word-key needle needs exactly that (the question ends
 * "The pass key is ", as the needle does), while the digit keys the model first learned can be found
 * by what they look like. Words come from the grammar or the prose `train` split with equal odds and
 * follow no grammar, so the second copy cannot be predicted from language statistics.
 */
export function copyTrainingRow(rng: Rng, length: number): MixedRow {
  const vocab = fillerWords(rng.next() < 0.5 ? { filler: 'grammar' } : { filler: 'prose', split: 'train' });
  const half = Math.floor(length / 2);
  let text = '';
  while (text.length < half) text += `${pick(rng, vocab)} `;
  const seg = encodeBytes(text.slice(0, half));
  const bytes = [...seg, ...seg, ...seg].slice(0, length);
  const ids = Int32Array.from([SPECIAL_TOKENS.bos, ...bytes]);
  const weights = new Float32Array(length);
  // Target t is byte t; bytes half+1.. follow a prefix that already occurred in the first copy.
  weights.fill(1, half + 1);
  return { ids, weights, kind: 'word-needle' };
}
