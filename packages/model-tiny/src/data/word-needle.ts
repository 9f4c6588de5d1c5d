import { layoutPrompt, type FillerChoice, type PlacedSample, digitsString, sentenceSource } from './compose.js';
import { createRng } from '@kvfold/core';
import { pick } from './random.js';
import { PASSKEY_QUESTION } from './tasks.js';

/** Options of {@link wordNeedleSample}. */
export interface WordNeedleOptions extends FillerChoice {
  /** Prompt length in bytes (= tokens); the prompt is exactly this long. */
  length: number;
  /** Needle depth in [0, 1]: fraction of the filler placed before the needle. */
  depth: number;
  /** Seed; the same options always give the same sample. */
  seed: number;
  /** `words` (default): the key is filler words; `digits`: a 5-digit number as in the classic passkey. */
  value?: 'words' | 'digits';
  /** Words in the key (default 3, 1-6). */
  words?: number;
}

const vocabCache = new Map<string, readonly string[]>();

/**
 * Words that are common in the filler itself, so a key made of them looks like filler: for the grammar,
 * every word of four letters or more it produces; for prose, words of 4-9 lower-case letters occurring
 * at least four times in the split.
 */
export function fillerWords(choice: FillerChoice = {}): readonly string[] {
  const id = `${choice.filler ?? 'grammar'}/${choice.split ?? 'eval'}`;
  let words = vocabCache.get(id);
  if (!words) {
    const next = sentenceSource(createRng(99), choice);
    const counts = new Map<string, number>();
    let seen = 0;
    // 60 KB of filler: the grammar's whole vocabulary appears many times; for prose this is the split.
    while (seen < 60_000) {
      const s = next();
      seen += s.length + 1;
      for (const w of s.split(/[^A-Za-z]+/)) if (/^[a-z]{4,9}$/.test(w)) counts.set(w, (counts.get(w) ?? 0) + 1);
    }
    const min = (choice.filler ?? 'grammar') === 'prose' ? 4 : 1;
    words = [...counts].filter(([, c]) => c >= min).map(([w]) => w).sort();
    vocabCache.set(id, words);
  }
  return words;
}

/**
 * Passkey retrieval whose key is made of filler words ("The pass key is gentle harbor lantern.
 * Remember it. gentle harbor lantern is the pass key."), over grammar or prose filler, closed by the
 * passkey question.
 *
 * Why it is hard: in the classic passkey the digits are the only digits in the prompt, so their keys
 * stand out (easy to keep for a scorer, never merged into filler by a similarity-based merger). Here
 * the key's tokens are ordinary filler words, so their KV keys resemble the filler's and a policy has
 * to keep them for where they are, not for what they look like. With `value: "digits"` and prose filler
 * it is the classic passkey on real text, whose neighbouring sentences are not near-copies.
 */
export function wordNeedleSample(o: WordNeedleOptions): PlacedSample {
  const nWords = o.words ?? 3;
  if (!Number.isInteger(nWords) || nWords < 1 || nWords > 6) throw new RangeError(`wordNeedleSample: words must be an integer in [1, 6], got ${nWords}`);
  if (!(o.depth >= 0 && o.depth <= 1)) throw new RangeError(`wordNeedleSample: depth must be in [0, 1], got ${o.depth}`);
  const value = o.value ?? 'words';
  if (value !== 'words' && value !== 'digits') throw new RangeError(`wordNeedleSample: value must be "words" or "digits", got ${JSON.stringify(value)}`);
  const rng = createRng(o.seed);
  let key: string;
  if (value === 'digits') key = digitsString(rng, 5);
  else {
    const vocab = fillerWords(o);
    const picked: string[] = [];
    while (picked.length < nWords) {
      const w = pick(rng, vocab);
      if (!picked.includes(w)) picked.push(w);
    }
    key = picked.join(' ');
  }
  const fact = `The pass key is ${key}. Remember it. ${key} is the pass key.`;
  const { prompt, factOffsets, questionOffset } = layoutPrompt({ ...o, facts: [fact], depths: [o.depth], question: PASSKEY_QUESTION, rng, caller: 'wordNeedleSample' });
  return { task: value === 'words' ? 'word-needle' : 'passkey-prose', prompt, answer: key, needleOffset: factOffsets[0], factOffsets, questionOffset, chance: 0 };
}
