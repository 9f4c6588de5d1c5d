import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fromHfConfig } from '../config.js';
import { MIX_TASKS, type MixTask } from '../data/mix.js';
import { mixAccuracy } from './eval.js';
import { toVariables } from './model.js';
import { readTensors } from './tensors.js';

/**
 * Quick full-cache accuracy of a weights folder on every task, teacher-forced and batched (the same
 * greedy exact match as a decode, see greedyMatch; for checking a training run, not for reports).
 * Usage: node build-train/train/quick-eval.js [DIR] [n=20] [lengths=512] [tasks=all]
 */
async function main(): Promise<void> {
  const [dirArg, nArg, lengthsArg, tasksArg] = process.argv.slice(2);
  const dir = resolve(dirArg ?? 'weights');
  const n = Number(nArg ?? 20);
  const lengths = (lengthsArg ?? '512').split(',').map(Number);
  const tasks = (tasksArg ? tasksArg.split(',') : [...MIX_TASKS]) as MixTask[];
  await tf.setBackend('wasm');
  await tf.ready();
  const cfg = fromHfConfig(JSON.parse(readFileSync(resolve(dir, 'config.json'), 'utf8')) as Record<string, number>);
  const file = resolve(dir, 'model.safetensors');
  const params = toVariables((await readTensors(readFileSync(file), file)).tensors);
  for (const L of lengths) {
    for (const t of tasks) {
      const t0 = Date.now();
      console.log(`L=${L} ${t} acc=${mixAccuracy(cfg, params, t, L, n, 0).toFixed(3)} n=${n} (${Date.now() - t0} ms)`);
    }
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
