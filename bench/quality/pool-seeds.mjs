// Pool the needle runs of seeds 0, 1, 2 kept in this folder, for one setting: per row and task, accuracy
// per seed and pooled with its Wilson interval; pooled exact McNemar for the pairs the runs compare (their
// config's `compare`; items of different seeds are different prompts, so pooling keeps the pairs independent).
//   node bench/quality/pool-seeds.mjs [after|in-prompt]   (after pnpm build; default: after)
//   after: question after compression (quality-needle, -seed1, -seed2)
//   in-prompt: question inside the compressed prompt (quality-needle-in-prompt, -seed1, -seed2)
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { accuracyInterval, comparePaired, formatInterval } from '../../packages/bench/dist/stats.js';
const root = fileURLToPath(new URL('.', import.meta.url));
const settings = { after: 'quality-needle', 'in-prompt': 'quality-needle-in-prompt' };
const setting = process.argv[2] ?? 'after';
if (!(setting in settings)) {
  console.error(`setting: must be one of ${Object.keys(settings).join(', ')} (got ${setting})`);
  process.exit(2);
}
const base = settings[setting];
const ids = [base, `${base}-seed1`, `${base}-seed2`];
const configs = ids.map((id) => JSON.parse(readFileSync(`${root}/${id}/config.json`, 'utf8')).document);
const questions = new Set(configs.map((c) => c.bench.suites.needle.question ?? 'after-compression'));
if (questions.size !== 1) throw new Error(`${ids.join(', ')}: the runs put the question in different places (${[...questions].join(', ')})`);
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
const pairs = configs[0].bench.suites.needle.compare.map((c) => [c.a, c.b]);
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
