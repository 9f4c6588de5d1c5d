// Pool the default-sweep runs of seeds 0, 1, 2 kept in this folder, for one suite or needle setting.
//   node bench/quality/pool-seeds.mjs [after|in-prompt|fidelity|perplexity]   (after pnpm build; default: after)
//   after: needle, question after compression (quality-needle, -seed1, -seed2)
//   in-prompt: needle, question inside the compressed prompt (quality-needle-in-prompt, -seed1, -seed2)
//   fidelity: attention error (quality-fidelity, -seed1, -seed2)
//   perplexity: held-out perplexity (quality-perplexity, -seed1, -seed2)
// Needle: per row and task, accuracy per seed and pooled with its Wilson interval; pooled exact McNemar for
// the pairs the runs compare (their config's `compare`; items of different seeds are different prompts, so
// pooling keeps the pairs independent).
// Fidelity and perplexity: per row, each seed's figure computed as the bench does (mean error over layers and
// contexts; exp(sum nll / sum tokens) and its ratio to that seed's full cache), then the mean of the three
// per-seed figures with their range [min, max] (three seeds are too few for a useful interval). Fidelity also
// names the lowest row per budget and seed, and checks the pooled lowest against the runner-up context by
// context (same prompts in both rows): a two-sided exact sign test on which row has the lower error.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { accuracyInterval, comparePaired, formatInterval, mcnemarExact } from '../../packages/bench/dist/stats.js';
const root = fileURLToPath(new URL('.', import.meta.url));
const settings = { after: 'quality-needle', 'in-prompt': 'quality-needle-in-prompt', fidelity: 'quality-fidelity', perplexity: 'quality-perplexity' };
const setting = process.argv[2] ?? 'after';
if (!(setting in settings)) {
  console.error(`setting: must be one of ${Object.keys(settings).join(', ')} (got ${setting})`);
  process.exit(2);
}
const base = settings[setting];
const ids = [base, `${base}-seed1`, `${base}-seed2`];
const configs = ids.map((id) => JSON.parse(readFileSync(`${root}/${id}/config.json`, 'utf8')).document);
const runs = ids.map((id) => readFileSync(`${root}/${id}/predictions.jsonl`, 'utf8').trim().split('\n').map((l) => JSON.parse(l)));
const seeds = configs.map((c) => c.seed ?? 0);
if (new Set(seeds).size !== seeds.length) throw new Error(`${ids.join(', ')}: the runs do not have distinct seeds (${seeds.join(', ')})`);
/** Row labels (`label@budget`) in the order of the first run. */
const labels = [...new Set(runs.flat().map((r) => r.variant))];
const pct = (x) => `${Math.round(100 * x)}%`;
const out = [];

if (setting === 'after' || setting === 'in-prompt') needle();
else pooledMeans(setting === 'fidelity' ? fidelity() : perplexity());
console.log(out.join('\n'));

function needle() {
  const questions = new Set(configs.map((c) => c.bench.suites.needle.question ?? 'after-compression'));
  if (questions.size !== 1) throw new Error(`${ids.join(', ')}: the runs put the question in different places (${[...questions].join(', ')})`);
  const by = new Map(); // label@budget|task -> seed -> Map(itemKey -> correct)
  runs.forEach((recs, s) => {
    for (const r of recs) {
      const d = r.data;
      const k = `${r.variant}|${d.task}`;
      const m = by.get(k) ?? [new Map(), new Map(), new Map()];
      m[s].set(`${d.length}|${d.depth}|${d.sample}`, d.correct);
      by.set(k, m);
    }
  });
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
}

/** Items of one row and seed; every row must be in every seed with the same item count. */
function itemsOf(v, s) {
  const items = runs[s].filter((r) => r.variant === v).map((r) => r.data);
  const n0 = runs[0].filter((r) => r.variant === v).length;
  if (items.length === 0 || items.length !== n0) throw new Error(`${ids[s]}: row ${v} has ${items.length} items, ${ids[0]} has ${n0}`);
  return items;
}

/** Per row: one figure per seed for each column. */
function fidelity() {
  const mean = (xs) => xs.reduce((a, x) => a + x, 0) / xs.length;
  const rows = labels.map((v) => ({ v, n: itemsOf(v, 0).length, cols: [seeds.map((_, s) => mean(itemsOf(v, s).flatMap((i) => i.errors)))] }));
  /** Per context (seed, length, sample): that context's error, mean over layers. */
  const perContext = (v) => new Map(seeds.flatMap((_, s) => itemsOf(v, s).map((i) => [`${s}|${i.context}|${i.sample}`, mean(i.errors)])));
  return { heads: ['attn error'], digits: 3, suffix: '', rows, perContext };
}

function perplexity() {
  const ppl = (items) => Math.exp(items.reduce((a, i) => a + i.nll, 0) / items.reduce((a, i) => a + i.tokens, 0));
  const full = seeds.map((_, s) => ppl(itemsOf(labels.find((v) => v.startsWith('full@')), s)));
  const rows = labels.map((v) => {
    const per = seeds.map((_, s) => ppl(itemsOf(v, s)));
    return { v, n: itemsOf(v, 0).length, cols: [per, per.map((p, s) => p / full[s])] };
  });
  return { heads: ['perplexity', 'vs full'], digits: 3, suffix: 'x', rows };
}

function pooledMeans({ heads, digits, suffix, rows, perContext }) {
  const f = (x, c) => `${x.toFixed(digits)}${c > 0 ? suffix : ''}`;
  out.push(`| row | budget | ${heads.flatMap((h) => [`${h}: seed ${seeds.join(' / ')}`, `${h}: mean [min, max]`]).join(' | ')} | n per seed |`);
  out.push(`| --- | ---: | ${heads.map(() => '--- | ---').join(' | ')} | ---: |`);
  for (const { v, n, cols } of rows) {
    const [label, budget] = v.split('@');
    const cells = cols.flatMap((per, c) => [per.map((x) => f(x, c)).join(' / '), `${f(per.reduce((a, x) => a + x, 0) / per.length, c)} [${f(Math.min(...per), c)}, ${f(Math.max(...per), c)}]`]);
    out.push(`| ${label} | ${budget} | ${cells.join(' | ')} | ${n} |`);
  }
  if (!perContext) return;
  // Lowest row per budget (full left out), per seed and pooled, and the pooled lowest against the runner-up.
  out.push('', `| budget | lowest ${heads[0]}: seed ${seeds.join(' / ')} | lowest, mean over seeds | runner-up | contexts lower: lowest / runner-up | sign test p |`, '| ---: | --- | --- | --- | ---: | ---: |');
  const name = (r) => r.v.split('@')[0];
  const pooled = (r) => r.cols[0].reduce((a, x) => a + x, 0);
  for (const budget of [...new Set(rows.map((r) => r.v.split('@')[1]))].filter((b) => b !== '1')) {
    const at = rows.filter((r) => r.v.split('@')[1] === budget);
    const lowest = (key) => at.reduce((a, r) => (key(r) < key(a) ? r : a));
    const per = seeds.map((_, s) => name(lowest((r) => r.cols[0][s])));
    const [first, second] = [...at].sort((a, b) => pooled(a) - pooled(b));
    const ea = perContext(first.v), eb = perContext(second.v);
    let onlyA = 0, onlyB = 0;
    for (const [k, x] of ea) { const y = eb.get(k); if (y === undefined) continue; if (x < y) onlyA++; else if (y < x) onlyB++; }
    const p = mcnemarExact(onlyA, onlyB);
    out.push(`| ${budget} | ${per.join(' / ')} | ${name(first)} | ${name(second)} | ${onlyA} / ${onlyB} | ${p < 0.001 ? '< 0.001' : p.toFixed(3)} |`);
  }
}
