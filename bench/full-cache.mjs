// Full-cache accuracy of a model on every generated task (issue 14), through the project's runtime.
//   node bench/full-cache.mjs [--model embedded|DIR] [--n 100] [--lengths 256,512,1024,2048]
//     [--tasks passkey,recall,...] [--settings after-compression,in-prompt] [--seed 0]
//     [--log bench/full-cache/NAME.jsonl] [--table bench/full-cache/NAME.md]
// Resumable: items already in --log are not run again. Build first (pnpm build).
import { writeFileSync } from 'node:fs';
import { fullCacheEval } from '../packages/bench/dist/full-cache.js';
import { openModel } from '../packages/bench/dist/model.js';
import { formatInterval, wilsonInterval } from '../packages/bench/dist/stats.js';
import { EVAL_SETTINGS } from '../packages/model-tiny/dist/index.js';

const argv = process.argv.slice(2);
const arg = (k, d) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const list = (k, d) => arg(k, d).split(',').filter((x) => x.length > 0);
const source = arg('--model', 'embedded');
const n = Number(arg('--n', '100'));
const lengths = list('--lengths', '256,512,1024,2048').map(Number);
const tasks = list('--tasks', Object.keys(EVAL_SETTINGS).join(','));
const settings = list('--settings', 'after-compression,in-prompt');
const seed = Number(arg('--seed', '0'));
const log = arg('--log', undefined);
const tablePath = arg('--table', undefined);

const { model, info } = await openModel(source);
const t0 = Date.now();
let last = 0;
const cells = await fullCacheEval(model, {
  tasks, lengths, n, settings, seed, log,
  onProgress(done, total, item) {
    if (Date.now() - last > 15000 || done === total) {
      last = Date.now();
      const s = (Date.now() - t0) / 1000;
      process.stderr.write(`${done}/${total} items, ${s.toFixed(0)} s; last ${item.task} L=${item.length} ${item.setting} #${item.sample}: ${item.correct ? 'ok' : `wrong (${JSON.stringify(item.predicted)} vs ${JSON.stringify(item.expected)})`}\n`);
    }
  },
});

const lines = [
  `Full-cache accuracy (greedy exact match), ${source} (${info.layers} layers, ${info.heads}/${info.kvHeads} heads, head dim ${info.headDim}, trained steps ${info.trainedSteps ?? '?'}; kernels ${info.kernels}), seed ${seed}.`,
  'Each cell: accuracy [95% Wilson interval] n. A task counts for the benchmark where every cell is >= 90%.',
  '',
  `| task | length | ${settings.join(' | ')} |`,
  `| --- | ---: | ${settings.map(() => '---').join(' | ')} |`,
];
for (const task of tasks) {
  for (const length of lengths) {
    const row = settings.map((st) => cells.find((c) => c.task === task && c.length === length && c.setting === st));
    lines.push(`| ${task} | ${length} | ${row.map((c) => (c ? formatInterval(c.accuracy) : 'n/a')).join(' | ')} |`);
  }
  const pooled = settings.map((st) => {
    const cs = cells.filter((c) => c.task === task && c.setting === st);
    return wilsonInterval(cs.reduce((a, c) => a + c.accuracy.successes, 0), cs.reduce((a, c) => a + c.accuracy.n, 0));
  });
  lines.push(`| ${task} | all | ${pooled.map((c) => formatInterval(c)).join(' | ')} |`);
}
lines.push('', '| task | what a cell holds |', '| --- | --- |', ...tasks.map((t) => `| ${t} | ${EVAL_SETTINGS[t]} |`));
const table = `${lines.join('\n')}\n`;
process.stdout.write(table);
if (tablePath) writeFileSync(tablePath, table);
