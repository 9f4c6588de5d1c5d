import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Part of the prose corpus: `train` (first 85% of the sentences) or the held-out `eval` (last 15%). */
export type ProseSplit = 'train' | 'eval';

/**
 * The prose corpus: The Devil's Dictionary by Ambrose Bierce (1911, public domain), as shipped by
 * Debian's `dict-devil` package and cleaned by corpus/prepare.mjs (one sentence per line, ASCII, no
 * digits, colons or underscores). Resolved from this module, so it works from src/, dist/ and build-train/.
 */
export const prosePath: string = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'corpus', 'devils-dictionary.txt');

/** Share of the sentences (from the start) in the `train` split. */
export const PROSE_TRAIN_SHARE = 0.85;

let cache: { train: string[]; eval: string[] } | undefined;

function load(): { train: string[]; eval: string[] } {
  if (!cache) {
    const all = readFileSync(prosePath, 'utf8')
      .split('\n')
      .filter((s) => s.length > 0);
    // Bounded: the shipped file holds about 4,000 sentences; a truncated or swapped file must fail here.
    if (all.length < 1000) throw new Error(`prose corpus ${prosePath} has ${all.length} sentences, expected about 4,000`);
    const cut = Math.floor(all.length * PROSE_TRAIN_SHARE);
    cache = { train: all.slice(0, cut), eval: all.slice(cut) };
  }
  return cache;
}

/** The sentences of one split, in text order. */
export function proseSentences(split: ProseSplit): readonly string[] {
  if (split !== 'train' && split !== 'eval') throw new RangeError(`split must be "train" or "eval", got ${JSON.stringify(split)}`);
  return load()[split];
}
