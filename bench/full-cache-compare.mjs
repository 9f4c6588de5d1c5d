// Paired comparison of two models' full-cache logs (written by bench/full-cache.mjs with the same seed):
//   node bench/full-cache-compare.mjs A.jsonl B.jsonl [--alpha 0.05]
// For every (task, length, setting) cell both logs hold, pairs the items by sample index and prints both
// accuracies with 95% Wilson intervals, the exact McNemar p-value and the verdict ("not significant"
// unless p < alpha), then the same pooled over lengths per task.
import { readFileSync } from 'node:fs';
import { comparePaired, formatInterval } from '../packages/bench/dist/stats.js';

const [pathA, pathB] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
if (!pathA || !pathB) {
  console.error('usage: node bench/full-cache-compare.mjs A.jsonl B.jsonl [--alpha 0.05]');
  process.exit(2);
}
const alphaAt = process.argv.indexOf('--alpha');
const alpha = alphaAt > 0 ? Number(process.argv[alphaAt + 1]) : 0.05;
const read = (p) => new Map(readFileSync(p, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)).map((i) => [`${i.task}|${i.length}|${i.setting}|${i.sample}`, i]));
const a = read(pathA);
const b = read(pathB);
const groups = new Map();
for (const [key, ia] of a) {
  const ib = b.get(key);
  if (!ib) continue;
  if (ia.expected !== ib.expected) throw new Error(`${key}: the logs hold different samples (seeds differ?)`);
  for (const g of [`${ia.task}|${ia.length}|${ia.setting}`, `${ia.task}|all|${ia.setting}`]) {
    const e = groups.get(g) ?? { a: [], b: [] };
    e.a.push(ia.correct);
    e.b.push(ib.correct);
    groups.set(g, e);
  }
}
console.log(`A = ${pathA}\nB = ${pathB}\n`);
console.log('| task | length | setting | A | B | only A | only B | McNemar p | verdict |');
console.log('| --- | ---: | --- | --- | --- | ---: | ---: | ---: | --- |');
for (const [g, e] of groups) {
  const [task, length, setting] = g.split('|');
  const r = comparePaired(e.a, e.b, { alpha });
  console.log(`| ${task} | ${length} | ${setting} | ${formatInterval(r.a)} | ${formatInterval(r.b)} | ${r.onlyA} | ${r.onlyB} | ${r.pValue < 0.001 ? r.pValue.toExponential(1) : r.pValue.toFixed(3)} | ${r.verdict} |`);
}
