import { createRng, type Rng } from '@kvfold/core';
import { pick } from './random.js';

// Word lists for a tiny English-like grammar. The filler deliberately contains no digits, no
// colons and never the phrase "pass key", so task tokens stay unambiguous inside it.
const NOUNS = [
  'river', 'garden', 'teacher', 'village', 'window', 'market', 'letter', 'forest', 'harbor', 'farmer',
  'kitchen', 'mountain', 'painter', 'library', 'bridge', 'lantern', 'orchard', 'sailor', 'meadow', 'castle',
  'student', 'engine', 'basket', 'journey', 'island', 'doctor', 'candle', 'valley', 'station', 'merchant',
  'storm', 'table', 'child', 'poet', 'road', 'city', 'cloud', 'field', 'boat', 'bird',
];
const ADJECTIVES = [
  'quiet', 'old', 'bright', 'small', 'gentle', 'distant', 'green', 'heavy', 'narrow', 'warm',
  'silver', 'patient', 'busy', 'cold', 'golden', 'empty', 'careful', 'tall', 'hidden', 'friendly',
];
const VERBS_T = [
  'watched', 'carried', 'painted', 'visited', 'found', 'followed', 'opened', 'cleaned', 'built', 'crossed',
  'remembered', 'described', 'repaired', 'noticed', 'admired', 'measured', 'guarded', 'named', 'sold', 'praised',
];
const VERBS_I = [
  'slept', 'waited', 'laughed', 'wandered', 'listened', 'rested', 'sang', 'worked', 'arrived', 'returned',
];
const PLACES = [
  'near the river', 'in the morning', 'after the rain', 'by the old wall', 'under the trees', 'at the market',
  'before dawn', 'in the evening', 'across the valley', 'beside the harbor', 'during the winter', 'along the road',
];
const ADVERBS = ['slowly', 'quietly', 'often', 'again', 'gladly', 'carefully', 'rarely', 'always'];
const CONNECT = ['and', 'but', 'while', 'because', 'so'];
const OPENERS = ['Later', 'Meanwhile', 'Then', 'Afterwards', 'Once', 'Still', 'Every day', 'Long ago'];

function np(rng: Rng): string {
  const det = pick(rng, ['the', 'a', 'the', 'every', 'one', 'that']);
  const n = pick(rng, NOUNS);
  const noun = det === 'a' && /^[aeiou]/.test(n) ? `an ${n}` : `${det} ${n}`;
  if (rng.next() < 0.45) {
    const adj = pick(rng, ADJECTIVES);
    const d = det === 'a' ? (/^[aeiou]/.test(adj) ? 'an' : 'a') : det;
    return `${d} ${adj} ${n}`;
  }
  return noun;
}

function clause(rng: Rng): string {
  const r = rng.next();
  if (r < 0.45) return `${np(rng)} ${pick(rng, VERBS_T)} ${np(rng)}`;
  if (r < 0.7) return `${np(rng)} ${pick(rng, VERBS_I)} ${pick(rng, PLACES)}`;
  if (r < 0.85) return `${np(rng)} ${pick(rng, ADVERBS)} ${pick(rng, VERBS_T)} ${np(rng)} ${pick(rng, PLACES)}`;
  return `${np(rng)} was ${pick(rng, ADJECTIVES)} ${pick(rng, PLACES)}`;
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** One English-like sentence ending in a period (ASCII, no digits, no colons). */
export function fillerSentence(rng: Rng): string {
  const r = rng.next();
  let s: string;
  if (r < 0.5) s = capitalise(clause(rng));
  else if (r < 0.8) s = capitalise(`${clause(rng)} ${pick(rng, CONNECT)} ${clause(rng)}`);
  else s = `${pick(rng, OPENERS)}, ${clause(rng)}`;
  return `${s}.`;
}

/** Options of {@link fillerText}. */
export interface FillerOptions {
  /** Exact length in bytes (= byte tokens) of the returned text. */
  length: number;
  /** Seed of the generator (ignored when `rng` is given). */
  seed?: number;
  /** Generator to draw from, advanced in place (lets callers continue one stream). */
  rng?: Rng;
}

/**
 * Deterministic English-like filler of exactly `length` bytes: space-separated sentences, the last
 * one cut off if needed. Sentence starts are at offsets where the previous char is a space.
 */
export function fillerText(options: FillerOptions): string {
  const { length } = options;
  if (!Number.isInteger(length) || length < 0) throw new RangeError(`fillerText: length must be a non-negative integer, got ${length}`);
  const rng = options.rng ?? createRng(options.seed ?? 0);
  const parts: string[] = [];
  let n = 0;
  // n counts sentence + separator bytes; the joined text is n - 1 long.
  while (n <= length) {
    const s = fillerSentence(rng);
    parts.push(s);
    n += s.length + 1;
  }
  return parts.join(' ').slice(0, length);
}
