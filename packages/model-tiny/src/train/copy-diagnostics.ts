import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createRng } from '@kvfold/core';
import { fromHfConfig, SPECIAL_TOKENS } from '../config.js';
import { copyTrainingRow } from '../data/copy.js';
import { evalTaskSample } from '../data/eval-tasks.js';
import type { MixTask } from '../data/mix.js';
import { encodeBytes } from '../data/training.js';
import { forward, toVariables, type Params } from './model.js';
import { readTensors } from './tensors.js';
import type { TinyModelConfig } from '../config.js';

/** Log-probabilities [T, vocab] of one row (bos first), teacher-forced. */
function logProbs(c: TinyModelConfig, p: Params, ids: number[]): number[][] {
  return tf.tidy(() => tf.logSoftmax(forward(c, p, tf.tensor2d(ids, [1, ids.length], 'int32'))).arraySync() as number[][][])[0]!;
}

/** Mean NLL of the first byte and of the other bytes of `bytes` predicted at positions `at`.., and whether greedy gets all. */
function score(lp: number[][], at: number, bytes: number[]): { first: number; rest: number[]; exact: boolean } {
  const rest: number[] = [];
  let first = 0;
  let exact = true;
  bytes.forEach((b, j) => {
    const row = lp[at + j]!;
    const v = -row[b]!;
    if (row.indexOf(Math.max(...row)) !== b) exact = false;
    if (j === 0) first = v;
    else rest.push(v);
  });
  return { first, rest, exact };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/**
 * Why a model does or does not answer a passkey-style task (TASKS.md, "Word-needle fine-tune"): the
 * log-loss of the answer's first byte and of its other bytes after the question, the same for the key's
 * repeat right after the needle ("Remember it. K"), and the loss and byte accuracy on held-out copying
 * rows. Teacher-forced; for diagnosing training, not for reports.
 * Usage: node build-train/train/copy-diagnostics.js [DIR=weights] [length=256] [n=16] [task=word-needle]
 */
async function main(): Promise<void> {
  const [dirArg, lArg, nArg, taskArg] = process.argv.slice(2);
  const dir = resolve(dirArg ?? 'weights');
  const L = Number(lArg ?? 256);
  const n = Number(nArg ?? 16);
  const task = (taskArg ?? 'word-needle') as MixTask;
  await tf.setBackend('wasm');
  await tf.ready();
  const cfg = fromHfConfig(JSON.parse(readFileSync(resolve(dir, 'config.json'), 'utf8')) as Record<string, number>);
  const file = resolve(dir, 'model.safetensors');
  const p = toVariables((await readTensors(readFileSync(file), file)).tensors);
  const answer = { first: [] as number[], rest: [] as number[], exact: 0 };
  const repeat = { first: [] as number[], rest: [] as number[], exact: 0 };
  for (let i = 0; i < n; i++) {
    const s = evalTaskSample(task, L, i, 0);
    const a = encodeBytes(s.answer);
    const ids = [SPECIAL_TOKENS.bos, ...encodeBytes(s.prompt), ...a];
    const lp = logProbs(cfg, p, ids);
    // Position t predicts byte t of prompt + answer (ids[t + 1]).
    const r1 = score(lp, s.prompt.length, a);
    answer.first.push(r1.first);
    answer.rest.push(...r1.rest);
    if (r1.exact) answer.exact++;
    const rep = s.prompt.indexOf(`Remember it. ${s.answer}`);
    if (rep >= 0) {
      const r2 = score(lp, rep + 13, a);
      repeat.first.push(r2.first);
      repeat.rest.push(...r2.rest);
      if (r2.exact) repeat.exact++;
    }
  }
  const f = (x: number) => x.toFixed(3);
  console.log(`${task} L=${L} n=${n} answer after the question: first-byte NLL ${f(mean(answer.first))}, other bytes ${f(mean(answer.rest))}, greedy-exact ${answer.exact}/${n}`);
  if (repeat.first.length > 0) console.log(`${task} L=${L} key's repeat after the needle: first-byte NLL ${f(mean(repeat.first))}, other bytes ${f(mean(repeat.rest))}, greedy-exact ${repeat.exact}/${repeat.first.length}`);
  let nll = 0;
  let ok = 0;
  let count = 0;
  for (let i = 0; i < 8; i++) {
    // Seeds far from any training step's stream.
    const r = copyTrainingRow(createRng(900_000 + i), L);
    const ids = Array.from(r.ids);
    const lp = logProbs(cfg, p, ids.slice(0, L));
    for (let t = 0; t < L; t++) {
      if (r.weights[t]! === 0) continue;
      const row = lp[t]!;
      nll -= row[ids[t + 1]!]!;
      if (row.indexOf(Math.max(...row)) === ids[t + 1]) ok++;
      count++;
    }
  }
  console.log(`copying rows L=${L} (8 held-out rows): NLL ${f(nll / count)} per scored byte, greedy byte accuracy ${f(ok / count)}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
