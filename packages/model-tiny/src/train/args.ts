import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { TinyModelConfig } from '../config.js';
import { parseMix, type Mix } from '../data/mix.js';

/** Model presets: `tiny` only checks the loop; `main` is the shipped model. */
export const PRESETS: Record<string, TinyModelConfig> = {
  tiny: { vocabSize: 258, hidden: 32, intermediate: 64, layers: 2, heads: 4, kvHeads: 2, headDim: 8, ropeTheta: 10000, rmsNormEps: 1e-5, maxPositions: 2048 },
  main: { vocabSize: 258, hidden: 64, intermediate: 192, layers: 3, heads: 4, kvHeads: 2, headDim: 16, ropeTheta: 10000, rmsNormEps: 1e-5, maxPositions: 2048 },
  // Candidates for the harder tasks (issue 14): head dim 32 leaves more RoPE frequency pairs slow enough
  // to match content over 2,048 tokens; 4 query heads keep the T x T buffers within wasm memory.
  wide: { vocabSize: 258, hidden: 128, intermediate: 384, layers: 4, heads: 4, kvHeads: 2, headDim: 32, ropeTheta: 10000, rmsNormEps: 1e-5, maxPositions: 2048 },
  wide3: { vocabSize: 258, hidden: 128, intermediate: 384, layers: 3, heads: 4, kvHeads: 2, headDim: 32, ropeTheta: 10000, rmsNormEps: 1e-5, maxPositions: 2048 },
};

/** What the training script accepts. */
export const TRAIN_USAGE =
  'usage: train.js [--preset tiny|main|wide|wide3] [--steps N] [--tokens N] [--lr X] [--warmup N] [--dir DIR] [--weights DIR|none] ' +
  '[--ckpt-sec S] [--eval-every N] [--seed N] [--stop-after N] [--length N | --lengths a,b,c] [--recall-share X] [--mix task=w,...] [--init WEIGHTS_DIR] [--copy-share X]';

/** Options of the training script. */
export interface Args {
  preset: string;
  steps: number;
  tokens: number;
  lr: number;
  warmup: number;
  dir: string;
  weights: string | null;
  ckptSec: number;
  evalEvery: number;
  seed: number;
  stopAfter: number;
  length: number;
  lengths: number[];
  recallShare: number;
  /** Task weights of the mixed training rows (`--mix`); null = the original passkey/recall rows. */
  mix: Mix | null;
  /**
   * A Hugging Face weights folder to start a new run from (`--init`; fine-tuning): its tensors replace the
   * seeded initialisation and must match the preset; the optimiser state starts fresh. Ignored when the
   * run folder already has a checkpoint (the run resumes from that). Null = seeded initialisation.
   */
  init: string | null;
  /**
   * Share of each step's rows that are copying rows (`--copy-share`, see copyTrainingRow: a random word
   * sequence repeated, the repeat scored), drawn before the mix; default 0.
   */
  copyShare: number;
}

/** A number option: finite, and an integer >= `min` when `integer`; else an error naming the flag. */
function numberOf(flag: string, text: string, min: number, integer: boolean): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new Error(`--${flag} ${JSON.stringify(text)} must be ${integer ? 'an integer' : 'a number'} >= ${min}`);
  }
  return n;
}

/** Parse the command line with node:util's parseArgs: an unknown flag or a bad value is an error naming it. */
export function trainArgs(argv: string[]): Args {
  const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const str = { type: 'string' } as const;
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      preset: str, steps: str, tokens: str, lr: str, warmup: str, dir: str, weights: str, 'ckpt-sec': str,
      'eval-every': str, seed: str, 'stop-after': str, length: str, lengths: str, 'recall-share': str, mix: str, init: str, 'copy-share': str,
    },
  });
  const num = (flag: keyof typeof v, fallback: number, min: number, integer = true): number => (v[flag] === undefined ? fallback : numberOf(flag, v[flag]!, min, integer));
  const a: Args = {
    preset: v.preset ?? 'main',
    steps: num('steps', 4000, 1),
    tokens: num('tokens', 4096, 1),
    lr: num('lr', 3e-3, 0, false),
    warmup: num('warmup', 100, 0),
    dir: resolve(v.dir ?? resolve(pkg, 'checkpoints')),
    weights: v.weights === 'none' ? null : resolve(v.weights ?? resolve(pkg, 'weights')),
    ckptSec: num('ckpt-sec', 240, 1, false),
    evalEvery: num('eval-every', 100, 1),
    seed: num('seed', 1234, 0),
    stopAfter: v['stop-after'] === undefined ? Infinity : numberOf('stop-after', v['stop-after'], 1, true),
    length: num('length', 0, 0),
    lengths: v.lengths === undefined ? [] : v.lengths.split(',').map((x) => numberOf('lengths', x, 1, true)),
    recallShare: num('recall-share', 0.5, 0, false),
    mix: v.mix === undefined ? null : parseMix(v.mix),
    init: v.init === undefined ? null : resolve(v.init),
    copyShare: num('copy-share', 0, 0, false),
  };
  if (a.copyShare > 1) throw new Error(`--copy-share ${a.copyShare} must be in [0, 1]`);
  if (a.recallShare > 1) throw new Error(`--recall-share ${a.recallShare} must be in [0, 1]`);
  if (!PRESETS[a.preset]) throw new Error(`unknown preset ${a.preset}; use ${Object.keys(PRESETS).join(', ')}`);
  return a;
}

