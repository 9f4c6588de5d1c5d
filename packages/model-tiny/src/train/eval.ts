import * as tf from '@tensorflow/tfjs';
import { SPECIAL_TOKENS, type TinyModelConfig } from '../config.js';
import { encodeBytes } from '../data/training.js';
import { passkeySample, recallSample, type TaskSample } from '../data/tasks.js';
import { evalTaskSample } from '../data/eval-tasks.js';
import type { MixTask } from '../data/mix.js';
import { forward, type Params } from './model.js';

/**
 * Greedy exact-match of `answer` after each prompt, in one teacher-forced forward pass: greedy
 * decoding reproduces the answer iff the argmax at every answer position equals the next answer
 * byte given the correct prefix, so this is the same accuracy as a token-by-token greedy decode.
 * Also returns the greedy string (correct prefix then the first wrong argmax).
 */
export function greedyMatch(c: TinyModelConfig, p: Params, samples: TaskSample[]): { correct: boolean; decoded: string }[] {
  const rows = samples.map((s) => [SPECIAL_TOKENS.bos, ...encodeBytes(s.prompt), ...encodeBytes(s.answer)]);
  const T = Math.max(...rows.map((r) => r.length));
  // Left-pad with bos so the answers line up at the end (all samples of a call share one length).
  const ids = rows.map((r) => [...new Array<number>(T - r.length).fill(SPECIAL_TOKENS.bos), ...r]);
  const argmax = tf.tidy(() => {
    const logits = forward(c, p, tf.tensor2d(ids.flat(), [ids.length, T], 'int32'));
    return tf.argMax(logits, -1).arraySync() as number[][];
  });
  return samples.map((s, b) => {
    const ans = encodeBytes(s.answer);
    let decoded = '';
    let ok = true;
    for (let j = 0; j < ans.length; j++) {
      const pred = argmax[b][T - ans.length - 1 + j];
      decoded += pred < 256 ? String.fromCharCode(pred) : `<${pred}>`;
      if (pred !== ans[j]) {
        ok = false;
        break;
      }
    }
    return { correct: ok, decoded };
  });
}

/** Passkey accuracy at one length over the given depths, `n` seeded samples per depth, batched. */
export function passkeyAccuracy(c: TinyModelConfig, p: Params, length: number, depths: number[], n: number, seed: number, batch = 8): number[] {
  batch = Math.max(1, Math.min(batch, Math.floor(4 * 1024 * 1024 / (length * length))));
  return depths.map((depth, di) => {
    const samples = Array.from({ length: n }, (_, i) => passkeySample({ length, depth, seed: seed + 1000 * di + i }));
    let ok = 0;
    for (let i = 0; i < samples.length; i += batch) ok += greedyMatch(c, p, samples.slice(i, i + batch)).filter((r) => r.correct).length;
    return ok / n;
  });
}

/** Associative-recall accuracy at one length (`pairs` pairs), and the chance level 1/pairs. */
export function recallAccuracy(c: TinyModelConfig, p: Params, length: number, pairs: number, n: number, seed: number, batch = 8): { accuracy: number; chance: number } {
  batch = Math.max(1, Math.min(batch, Math.floor(4 * 1024 * 1024 / (length * length))));
  const samples = Array.from({ length: n }, (_, i) => recallSample({ length, pairs, seed: seed + i }));
  let ok = 0;
  for (let i = 0; i < samples.length; i += batch) ok += greedyMatch(c, p, samples.slice(i, i + batch)).filter((r) => r.correct).length;
  return { accuracy: ok / n, chance: 1 / pairs };
}

/** Full-cache accuracy of `n` evaluation samples of `task` at `length` (see evalTaskSample), batched. */
export function mixAccuracy(c: TinyModelConfig, p: Params, task: MixTask, length: number, n: number, seed: number, batch = 8): number {
  batch = Math.max(1, Math.min(batch, Math.floor(4 * 1024 * 1024 / (length * length))));
  const samples = Array.from({ length: n }, (_, i) => evalTaskSample(task, length, i, seed));
  let ok = 0;
  for (let i = 0; i < samples.length; i += batch) ok += greedyMatch(c, p, samples.slice(i, i + batch)).filter((r) => r.correct).length;
  return ok / n;
}
