import { fillerSentence } from './filler.js';
import { proseSentences, type ProseSplit } from './prose.js';
import type { Rng } from '@kvfold/core';
import { intIn } from './random.js';
import type { TaskSample } from './tasks.js';

/**
 * Where filler comes from: `grammar` is the tiny English-like grammar of {@link fillerSentence}
 * (about 130 words, so neighbouring sentences look alike); `prose` is consecutive sentences of real
 * public-domain text (The Devil's Dictionary, about 10,000 distinct words; see corpus/README.md).
 */
export type FillerKind = 'grammar' | 'prose';

/** Filler options shared by the generated tasks. */
export interface FillerChoice {
  /** Filler source (default `grammar`). */
  filler?: FillerKind;
  /**
   * Part of the prose text to draw from (default `eval`): training uses `train`, evaluation the
   * held-out `eval` part, so a model is never scored on passages it was trained on. Ignored for grammar.
   */
  split?: ProseSplit;
}

/** A generated sample placed in filler: where its question and its facts start. */
export interface PlacedSample extends TaskSample {
  /** Name of the generator (for reports). */
  task: string;
  /**
   * Byte offset where the question starts. Query-agnostic evaluation compresses
   * `prompt.slice(0, questionOffset)` and feeds the rest after the compression; query-aware evaluation
   * compresses the whole prompt.
   */
  questionOffset: number;
  /** Byte offset of every inserted fact (needle, assignment), in prompt order. */
  factOffsets: number[];
  /** Accuracy of the best blind guess among the values the prompt lists. */
  chance: number;
}

/** A random number of `n` digits without a leading zero. */
export function digitsString(rng: Rng, n: number): string {
  let s = String(intIn(rng, 1, 9));
  for (let i = 1; i < n; i++) s += String(intIn(rng, 0, 9));
  return s;
}

/**
 * Filler of exactly `n` bytes made of whole sentences from `next` (the last one cut if needed), and
 * the sentence-start offsets (positions where an inserted fact reads naturally).
 */
export function fillerBlock(next: () => string, n: number): { text: string; starts: number[] } {
  let text = '';
  const starts: number[] = [];
  while (text.length < n) {
    if (text.length > 0) text += ' ';
    starts.push(text.length);
    text += next();
  }
  text = text.slice(0, n);
  return { text, starts: starts.filter((s) => s <= n) };
}

/** The sentence start (or the end, `len`) nearest to `target`. */
export function nearestStart(starts: number[], target: number, len: number): number {
  let best = 0;
  for (const s of [...starts, len]) if (Math.abs(s - target) < Math.abs(best - target)) best = s;
  return best;
}

/**
 * A sentence stream for `choice`: grammar sentences drawn from `rng`, or consecutive prose sentences
 * from an `rng`-chosen start in the chosen split (wrapping around at its end).
 */
export function sentenceSource(rng: Rng, choice: FillerChoice = {}): () => string {
  const kind = choice.filler ?? 'grammar';
  if (kind === 'grammar') return () => fillerSentence(rng);
  if (kind !== 'prose') throw new RangeError(`filler must be "grammar" or "prose", got ${JSON.stringify(kind)}`);
  const sentences = proseSentences(choice.split ?? 'eval');
  let i = rng.int(sentences.length);
  return () => sentences[i++ % sentences.length];
}

/** Largest distance, in bytes, between a fact's requested position and the sentence start it snaps to. */
export const FACT_SNAP = 64;

/** Options of {@link layoutPrompt}. */
export interface LayoutOptions extends FillerChoice {
  /** Exact prompt length in bytes (= tokens). */
  length: number;
  /** Fact sentences (no surrounding spaces), in the order they must appear. */
  facts: string[];
  /** Depth in [0, 1] of each fact (fraction of the filler before it); non-decreasing. */
  depths: number[];
  /** Question closing the prompt (starts with a space). */
  question: string;
  /** Generator of the filler (advanced in place). */
  rng: Rng;
  /** Name of the calling generator, for error messages. */
  caller: string;
}

/** A prompt laid out by {@link layoutPrompt}. */
export interface Layout {
  /** The prompt, exactly the requested length. */
  prompt: string;
  /** Byte offset of each fact, in order. */
  factOffsets: number[];
  /** Byte offset where the question starts. */
  questionOffset: number;
}

/**
 * Place `facts` at sentence starts (or word starts, see {@link FACT_SNAP}) of seeded filler at the
 * requested depths and close with the
 * question; the prompt is exactly `length` bytes (padded with spaces before the question when
 * trimming shortened it by a byte or two).
 * @throws RangeError when `length` cannot hold the facts and the question.
 */
export function layoutPrompt(o: LayoutOptions): Layout {
  const factBytes = o.facts.reduce((a, f) => a + f.length + 1, 0);
  const minimum = factBytes + o.question.length;
  if (!Number.isInteger(o.length) || o.length < minimum) throw new RangeError(`${o.caller}: length must be an integer >= ${minimum} for these facts and question, got ${o.length}`);
  for (let i = 0; i < o.depths.length; i++) {
    const d = o.depths[i];
    if (!(d >= 0 && d <= 1) || (i > 0 && d < o.depths[i - 1])) throw new RangeError(`${o.caller}: depths must be non-decreasing values in [0, 1], got ${JSON.stringify(o.depths)}`);
  }
  const bodyLen = o.length - o.question.length;
  const fillLen = bodyLen - factBytes;
  const { text, starts } = fillerBlock(sentenceSource(o.rng, o), fillLen);
  // Prose sentences can run to hundreds of bytes: when no sentence starts within FACT_SNAP bytes of the
  // target, the fact goes in at the nearest word start instead, so depths stay where they were asked.
  let words: number[] | undefined;
  const cuts = o.depths.map((d) => {
    const target = Math.round(d * fillLen);
    const cut = nearestStart(starts, target, fillLen);
    if (Math.abs(cut - target) <= FACT_SNAP) return cut;
    words ??= [...text.matchAll(/ (?=\S)/g)].map((m) => (m.index ?? 0) + 1);
    return nearestStart(words, target, fillLen);
  });
  let body = '';
  const factOffsets: number[] = [];
  const add = (piece: string) => {
    if (piece.length === 0) return;
    if (body.length > 0) body += ' ';
    body += piece;
  };
  let prev = 0;
  o.facts.forEach((fact, i) => {
    add(text.slice(prev, cuts[i]).trim());
    if (body.length > 0) body += ' ';
    factOffsets.push(body.length);
    body += fact;
    prev = cuts[i];
  });
  add(text.slice(prev).trim());
  body = body.slice(0, bodyLen);
  body += ' '.repeat(bodyLen - body.length);
  return { prompt: body + o.question, factOffsets, questionOffset: bodyLen };
}

/** Distinct depths spread over [0, 1]: one uniform draw in each of `n` equal strata, in order. */
export function stratifiedDepths(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (i + rng.next()) / n);
}
