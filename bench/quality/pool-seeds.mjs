// Pool the needle runs of seeds 0, 1, 2 (question after compression) kept in this folder: per row and
// task, accuracy per seed and pooled with its Wilson interval; pooled exact McNemar for the claimed pairs
// (items of different seeds are different prompts, so pooling keeps the pairs independent).
//   node bench/quality/pool-seeds.mjs   (after pnpm build)
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { accuracyInterval, comparePaired, formatInterval } from '../../packages/bench/dist/stats.js';
const root = fileURLToPath(new URL('.', import.meta.url));
const ids = ['quality-needle', 'quality-needle-seed1', 'quality-needle-seed2'];
const runs = ids.map((id) => readFileSync(`${root}/${id}/predictions.jsonl`, 'utf8').trim().split('\n').map((l) => JSON.parse(l)));
const labels = [];
const by = new Map(); // label@budget|task -> seed -> Map(itemKey -> correct)
runs.forEach((recs, s) => {
  for (const r of recs) {
    const d = r.data;
    const v = r.variant;
    if (!labels.includes(v)) labels.push(v);
    const k = `${v}|${d.task}`;
    const m = by.get(k) ?? [new Map(), new Map(), new Map()];
    m[s].set(`${d.length}|${d.depth}|${d.sample}`, d.correct);
    by.set(k, m);
  }
});
const pct = (x) => `${Math.round(100 * x)}%`;
const out = [];
out.push('| row | budget | passkey: seed 0 / 1 / 2 | passkey, 3 seeds pooled | passkey-prose: seed 0 / 1 / 2 | passkey-prose, 3 seeds pooled |');
out.push('| --- | ---: | --- | --- | --- | --- |');
for (const v of labels) {
  const cells = ['passkey', 'passkey-prose'].flatMap((t) => {
    const m = by.get(`${v}|${t}`);
    const per = m.map((x) => (x.size ? `${pct([...x.values()].filter(Boolean).length / x.size)} (${x.size})` : 'n/a'));
    const all = m.flatMap((x) => [...x.values()]);
    return [per.join(' / '), formatInterval(accuracyInterval(all))];
  });
  const [label, budget] = v.split('@');
  out.push(`| ${label} | ${budget} | ${cells.join(' | ')} |`);
}
const pairs = [
  ...['random', 'window', 'knorm', 'snapkv', 'h2o', 'cam'].map((b) => ['kvmerger', `${b}-prefill`]),
  ...['window', 'snapkv', 'h2o'].map((b) => ['kvmerger-held', b]),
  ['kvmerger', 'kvmerger-nomerge'], ['kvmerger', 'kvmerger-proportional'], ['h2o', 'random'],
];
out.push('', '| A | B | budget | task | A pooled | B pooled | only A | only B | p | verdict |', '| --- | --- | ---: | --- | --- | --- | ---: | ---: | ---: | --- |');
for (const [a, b] of pairs) for (const budget of ['0.5', '0.35', '0.2']) for (const t of ['passkey', 'passkey-prose']) {
  const ma = by.get(`${a}@${budget}|${t}`); const mb = by.get(`${b}@${budget}|${t}`);
  if (!ma || !mb) continue;
  const xa = [], xb = [];
  ma.forEach((m, s) => { for (const [k, c] of m) if (mb[s].has(k)) { xa.push(c); xb.push(mb[s].get(k)); } });
  if (xa.length === 0) continue;
  const r = comparePaired(xa, xb);
  out.push(`| ${a} | ${b} | ${budget} | ${t} | ${formatInterval(r.a)} | ${formatInterval(r.b)} | ${r.onlyA} | ${r.onlyB} | ${r.pValue < 0.001 ? '< 0.001' : r.pValue.toFixed(3)} | ${r.verdict === 'A better' ? `${a} better` : r.verdict === 'B better' ? `${b} better` : 'not significant'} |`);
}
console.log(out.join('\n'));
