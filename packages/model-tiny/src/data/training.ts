import { SPECIAL_TOKENS } from '../config.js';
import { fillerText } from './filler.js';
import { Rng } from './rng.js';
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
  kind: 'passkey' | 'recall' | 'copy';
}

const COPY_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789';

/**
 * Copy drill: filler with several random strings written twice as `[s]` ... `[s]`; the second copy of
 * each is weighted {@link ANSWER_WEIGHT}. It is the generic form of what both tasks need (find the
 * earlier occurrence of the current context and copy what followed it) and makes the copying
 * circuit form early; the passkey and recall tasks themselves are unchanged.
 */
export function copyRow(rng: Rng, length: number): TrainingRow {
  const n = 1 + Math.floor(length / 192);
  const strings = Array.from({ length: n }, () => {
    let x = '';
    const len = rng.int(6, 16);
    for (let i = 0; i < len; i++) x += COPY_CHARS[rng.int(0, COPY_CHARS.length - 1)];
    return `[${x}]`;
  });
  // Each string's two copies go at random points; order: all first copies, then all second copies
  // shuffled, so copies are separated by filler of every distance up to the row length.
  const marks = [...strings.map((x, i) => ({ x, i, second: false })), ...strings.map((x, i) => ({ x, i, second: true }))];
  const firsts = marks.filter((m) => !m.second);
  const seconds = marks.filter((m) => m.second);
  for (let i = seconds.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [seconds[i], seconds[j]] = [seconds[j], seconds[i]];
  }
  const order = [...firsts, ...seconds];
  const markLen = order.reduce((a, m) => a + m.x.length + 1, 0);
  const fill = fillerText({ length: Math.max(0, length - markLen), rng });
  const cuts = order.map(() => rng.int(0, fill.length)).sort((a, b) => a - b);
  let text = '';
  const weighted: [number, number][] = [];
  let prev = 0;
  order.forEach((m, k) => {
    text += `${fill.slice(prev, cuts[k])} `;
    // Every char after the opening bracket of a second copy is weighted (the bracket itself is unpredictable).
    if (m.second) weighted.push([text.length + 1, m.x.length - 1]);
    text += m.x;
    prev = cuts[k];
  });
  text += fill.slice(prev);
  const body = encodeBytes(text).slice(0, length);
  while (body.length < length) body.push(32);
  const ids = Int32Array.from([SPECIAL_TOKENS.bos, ...body]);
  const weights = new Float32Array(length).fill(1);
  // Target t predicts ids[t + 1] = body[t] (bos comes first), so the char at text offset o is target o.
  for (const [start, len] of weighted) for (let j = 0; j < len && start + j < length; j++) weights[start + j] = ANSWER_WEIGHT;
  return { ids, weights, kind: 'copy' };
}

/** Encode ASCII text as byte ids. */
export function encodeBytes(text: string): number[] {
  return Array.from(new TextEncoder().encode(text));
}

/**
 * Draw one training row of exactly `length` positions: bos + task prompt + answer + "." + eos, with
 * answer digits weighted {@link ANSWER_WEIGHT}. Half passkey (random depth), half recall (2-6 pairs).
 */
export function trainingRow(rng: Rng, length: number, copyFraction = 0): TrainingRow {
  if (copyFraction > 0 && rng.next() < copyFraction) return copyRow(rng, length);
  const seed = rng.nextU32();
  const kind = rng.next() < 0.5 ? 'passkey' : 'recall';
  const answerLen = kind === 'passkey' ? 5 : 4;
  const promptLen = length - answerLen - 2;
  let s: TaskSample;
  if (kind === 'passkey') s = passkeySample({ length: promptLen, depth: rng.next(), seed });
  else s = recallSample({ length: promptLen, pairs: rng.int(2, Math.min(6, 1 + Math.floor(length / 128))), seed });
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
