import { digitsString, fillerBlock, nearestStart } from './compose.js';
import { fillerSentence } from './filler.js';
import { createRng, type Rng } from '@kvfold/core';
import { intIn } from './random.js';

/** A retrieval prompt and the exact continuation a correct model produces (greedy). */
export interface TaskSample {
  /** Prompt text (ASCII; one byte per token). */
  prompt: string;
  /** Expected continuation (digits only). */
  answer: string;
  /** Byte offset in `prompt` where the inserted fact (needle or first pair) starts. */
  needleOffset: number;
}

/** Options of {@link passkeySample}. */
export interface PasskeyOptions {
  /** Target prompt length in bytes (= tokens); the prompt is exactly this long when >= the minimum. */
  length: number;
  /** Needle depth in [0, 1]: fraction of the filler placed before the needle. */
  depth: number;
  /** Seed; the same options always give the same sample. */
  seed: number;
  /** Number of digits of the key (default 5). */
  digits?: number;
}

/** The question that closes every passkey prompt; the model continues with the key. */
export const PASSKEY_QUESTION = ' What is the pass key? The pass key is ';

/** Grammar filler of exactly `n` bytes and its sentence starts. */
function fillerWithBoundaries(rng: Rng, n: number): { text: string; starts: number[] } {
  return fillerBlock(() => fillerSentence(rng), n);
}

/**
 * Passkey retrieval sample: filler with "The pass key is K. Remember it. K is the pass key." at the
 * requested depth, closed by {@link PASSKEY_QUESTION}; the answer is K.
 */
export function passkeySample(options: PasskeyOptions): TaskSample {
  const { length, depth, seed } = options;
  const digits = options.digits ?? 5;
  if (!(depth >= 0 && depth <= 1)) throw new RangeError(`passkeySample: depth must be in [0, 1], got ${depth}`);
  if (!Number.isInteger(digits) || digits < 1 || digits > 12) throw new RangeError(`passkeySample: digits must be an integer in [1, 12], got ${digits}`);
  const rng = createRng(seed);
  const key = digitsString(rng, digits);
  const needle = ` The pass key is ${key}. Remember it. ${key} is the pass key. `;
  const fillLen = Math.max(0, length - needle.length - PASSKEY_QUESTION.length);
  const { text, starts } = fillerWithBoundaries(rng, fillLen);
  const at = nearestStart(starts, Math.round(depth * fillLen), fillLen);
  // Joining at a sentence start: drop the space the needle already carries.
  const before = text.slice(0, at).replace(/ $/, '');
  const after = text.slice(at);
  let prompt = `${before}${needle}${after}`.replace(/^ /, '');
  prompt = prompt.replace(/ +$/, '') + PASSKEY_QUESTION;
  // Trimming spaces can shorten the prompt by a byte or two; pad with filler words to keep it exact.
  const pad = length - prompt.length;
  if (pad > 0) prompt = `${prompt.slice(0, prompt.length - PASSKEY_QUESTION.length)}${' '.repeat(pad)}${PASSKEY_QUESTION}`;
  const needleOffset = prompt.indexOf('The pass key is');
  return { prompt, answer: key, needleOffset };
}

/** Options of {@link recallSample}. */
export interface RecallOptions {
  /** Target prompt length in bytes (= tokens). */
  length: number;
  /** Number of "key: value" pairs scattered through the filler (default 4). */
  pairs?: number;
  /** Seed; the same options always give the same sample. */
  seed: number;
  /** Digits per value (default 4). */
  digits?: number;
}

/** A recall sample plus what accuracy a guesser among the listed values would get. */
export interface RecallSample extends TaskSample {
  /** The queried key. */
  key: string;
  /** All pairs in prompt order. */
  pairs: {
    /** The pseudo-word key. */
    key: string;
    /** Its digit value. */
    value: string;
  }[];
  /** Accuracy of picking one listed value uniformly at random (1 / pairs). */
  chance: number;
}

const SYL_C = 'bdfgklmnprstvz';
const SYL_V = 'aeiou';

function pseudoWord(rng: Rng): string {
  let w = '';
  for (let i = 0; i < 2; i++) w += SYL_C[intIn(rng, 0, SYL_C.length - 1)] + SYL_V[intIn(rng, 0, SYL_V.length - 1)];
  return w;
}

/**
 * Multi-key associative recall: `pairs` facts "Key xxxx: vvvv." at random sentence starts in the
 * filler, then "Which value has key xxxx? xxxx: " whose answer is that key's value.
 */
export function recallSample(options: RecallOptions): RecallSample {
  const { length, seed } = options;
  const nPairs = options.pairs ?? 4;
  const digits = options.digits ?? 4;
  if (!Number.isInteger(nPairs) || nPairs < 1 || nPairs > 64) throw new RangeError(`recallSample: pairs must be an integer in [1, 64], got ${nPairs}`);
  const rng = createRng(seed);
  const keys: string[] = [];
  while (keys.length < nPairs) {
    const k = pseudoWord(rng);
    if (!keys.includes(k)) keys.push(k);
  }
  const pairs = keys.map((key) => ({ key, value: digitsString(rng, digits) }));
  const target = pairs[intIn(rng, 0, nPairs - 1)];
  const question = ` Which value has key ${target.key}? ${target.key}: `;
  const facts = pairs.map((p) => ` Key ${p.key}: ${p.value}.`);
  const factLen = facts.reduce((a, f) => a + f.length, 0);
  const fillLen = Math.max(0, length - factLen - question.length);
  const { text, starts } = fillerWithBoundaries(rng, fillLen);
  // Distinct insertion points, sorted, so pairs appear in the generated order.
  const cuts = pairs.map(() => nearestStart(starts, intIn(rng, 0, fillLen), fillLen)).sort((a, b) => a - b);
  let prompt = '';
  let prev = 0;
  cuts.forEach((c, i) => {
    prompt += text.slice(prev, c).replace(/ $/, '') + facts[i];
    if (c < fillLen && text[c] !== ' ') prompt += ' ';
    prev = c;
  });
  prompt += text.slice(prev);
  prompt = prompt.replace(/^ /, '').replace(/ +/g, ' ').replace(/ +$/, '');
  const pad = length - prompt.length - question.length;
  if (pad > 0) prompt += ' '.repeat(pad);
  prompt += question;
  const needleOffset = prompt.indexOf('Key ');
  return { prompt, answer: target.value, needleOffset, key: target.key, pairs, chance: 1 / nPairs };
}
