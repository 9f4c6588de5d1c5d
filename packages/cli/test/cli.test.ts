import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEMO_SUMMARY, createKVFold, kvfoldSchema } from '@kvfold/bench';
import { parseModelConfig, randomWeights, writeCheckpoint } from '@kvfold/runtime';
import { commandName, demoIntro, demoSmokeNote, main, type CliIO } from '../src/index.js';

function io(cwd = process.cwd()): CliIO & { out: () => string; err: () => string } {
  const o: string[] = [];
  const e: string[] = [];
  return { cwd, stdout: { write: (s: string) => o.push(s) }, stderr: { write: (s: string) => e.push(s) }, out: () => o.join(''), err: () => e.join('') };
}

const tmp = (p = 'kvfold-cli-') => mkdtempSync(join(tmpdir(), p));
let model: string;

beforeAll(async () => {
  model = tmp('kvfold-cli-model-');
  const config = parseModelConfig({ model_type: 'llama', vocab_size: 258, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000, rms_norm_eps: 1e-5, tie_word_embeddings: true, max_position_embeddings: 512, eos_token_id: 257, kvfold: { tokenizer: 'bytes' } });
  await writeCheckpoint(model, config, randomWeights(config, 3, 0.5));
});

async function run(args: string[], cwd?: string) {
  const x = io(cwd);
  const code = await main(args, x);
  return { code, out: x.out(), err: x.err() };
}

describe('kvfold: bad input exits 2 with a clear message and no stack trace', () => {
  it.each([
    [['bench', '--suite', 'needle,bogus'], 'unknown suite "bogus"; suites: needle, fidelity, perplexity, speed'],
    [['bench', '--budget', '1.5'], '--budget "1.5" is outside (0, 1]'],
    [['bench', '--budget', '0'], 'is outside (0, 1]'],
    [['bench', '--budget', 'abc'], 'is outside (0, 1]'],
    [['bench', '--model', '/definitely/not/here', '--suite', 'needle'], 'model folder "/definitely/not/here" does not exist'],
    [['bench', '--policy', 'nosuch'], 'unknown policy "nosuch"'],
    [['bench', '--config', '/no/such/config.json'], 'config file /no/such/config.json not found'],
    [['generate', '--model', '/definitely/not/here', '--prompt', 'hi'], 'does not exist'],
    [['generate', '--model', 'embedded', '--prompt', 'hi', '--policy', 'h2o', '--budget', '2'], 'outside (0, 1]'],
    [['frobnicate'], "unknown command 'frobnicate'"],
  ])('%j', async (args, message) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.err).toContain(message);
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('a bad config names every JSON path; --debug adds the stack', async () => {
    const dir = tmp();
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ bench: { budgets: [0.5, 2], policies: [{ name: 'kvmerger', options: { eps: 3 } }], suites: { needle: { depths: [2] }, bogus: {} } } }));
    for (const cmd of [['validate', file], ['bench', '--config', file]]) {
      const r = await run(cmd);
      expect(r.code).toBe(2);
      for (const p of ['/bench/policies/0/options/eps', '/bench/budgets/1', '/bench/suites/bogus', '/bench/suites/needle/depths/0']) expect(r.err).toContain(p);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
    writeFileSync(join(dir, 'broken.json'), '{"bench": ');
    const broken = await run(['validate', join(dir, 'broken.json')]);
    expect(broken.code).toBe(2);
    expect(broken.err).toContain(`${join(dir, 'broken.json')}:1:11: not valid JSON: expected a value, found end of input`);
    const debug = await run(['--debug', 'validate', file]);
    expect(debug.code).toBe(2);
    expect(debug.err).toMatch(/\n\s+at /);
  });
});

describe('kvfold commands', () => {
  it('validate accepts the bench configs and a runtime config', async () => {
    const demo = await run(['validate', join(import.meta.dirname, '../../../bench/demo.json')]);
    expect(demo.code).toBe(0);
    expect(demo.out).toContain('valid');
    expect(demo.out).toContain('13 variants');
    const dir = tmp();
    writeFileSync(join(dir, 'rt.json'), JSON.stringify({ policy: { name: 'h2o', budget: 0.5 } }));
    const rt = await run(['validate', join(dir, 'rt.json')]);
    expect(rt.code).toBe(0);
    expect(rt.out).toContain('policy h2o');
  });

  it('list shows policies, backends and plugins with option schemas', async () => {
    const r = await run(['list']);
    expect(r.code).toBe(0);
    for (const s of ['policies:', 'kvmerger', 'eps', 'default 0.75', 'backends:', 'onnx', 'threads', 'plugins:', '@kvfold/policy-h2o', 'benchmark suites: needle, fidelity, perplexity, speed']) expect(r.out).toContain(s);
    const j = await run(['list', '--json']);
    const parsed = JSON.parse(j.out) as { policies: { name: string; schema: object }[]; backends: { name: string }[]; plugins: string[] };
    expect(parsed.policies.map((p) => p.name)).toEqual(['cam', 'chain', 'full', 'h2o', 'knorm', 'kvmerger', 'pyramidkv', 'random', 'snapkv', 'window']);
    expect(parsed.backends.map((b) => b.name)).toEqual(['onnx', 'reference', 'tfjs']);
    expect(parsed.plugins).toContain('@kvfold/backend-onnx');
  });

  it('schema writes the composed schema', async () => {
    const dir = tmp();
    const r = await run(['schema', '--out', 'kvfold.schema.json'], dir);
    expect(r.code).toBe(0);
    const written = JSON.parse(readFileSync(join(dir, 'kvfold.schema.json'), 'utf8')) as unknown;
    expect(written).toEqual(JSON.parse(JSON.stringify(kvfoldSchema(await createKVFold()))));
    const stdout = await run(['schema', '--out', '-']);
    expect(JSON.parse(stdout.out)).toEqual(written);
  });

  it('generate runs a model folder through the runtime and reports tokens/s and cache bytes', async () => {
    const r = await run(['generate', '--model', model, '--prompt', 'The pass key is 12345. What is it?', '--policy', 'h2o', '--budget', '0.5', '--max-tokens', '6']);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/decode [\d.]+ tokens\/s/);
    expect(r.err).toMatch(/cache: peak [\d.]+ KiB, final [\d.]+ KiB/);
    expect(r.err).toContain('policy h2o at budget 0.5');
    const full = await run(['generate', '--model', model, '--prompt', 'hello', '--max-tokens', '3']);
    expect(full.code).toBe(0);
    expect(full.err).toContain('policy: none (full cache)');
  });

  it('bench --suite needle --policy kvmerger --budget 0.35 runs that slice against the full baseline', async () => {
    const out = tmp();
    const dir = tmp();
    writeFileSync(join(dir, 'c.json'), JSON.stringify({ bench: { name: 't', model, suites: { needle: { lengths: [80], depths: [0.5], samples: 1, recall: null }, fidelity: { contexts: [40], probes: 8, samples: 1 } } } }));
    const r = await run(['bench', '--config', join(dir, 'c.json'), '--suite', 'needle', '--policy', 'kvmerger', '--budget', '0.35', '--out', out, '--quiet', '--id', 'slice']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('| kvmerger | 0.35 |');
    expect(r.out).toContain('| full | 1 (full) |');
    expect(r.err).toBe('');
    const runDir = join(out, 'slice');
    expect(readdirSync(runDir)).toEqual(expect.arrayContaining(['config.json', 'metrics.json', 'predictions.jsonl', 'report.md', 'plots']));
    const keys = readFileSync(join(runDir, 'predictions.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { key: string }).key);
    expect(keys).toEqual(['needle|passkey|L=80|d=0.5|s=0|full@1', 'needle|passkey|L=80|d=0.5|s=0|kvmerger@0.35']);
    // the same id resumes (nothing left to compute); --resume reads the stored config
    const again = await run(['bench', '--resume', runDir, '--jsonl']);
    expect(again.code).toBe(0);
    const events = again.out.trim().split('\n').map((l) => JSON.parse(l) as { type: string; reused?: number });
    expect(events[0]).toMatchObject({ type: 'run', reused: 2 });
    expect(events.at(-1)!.type).toBe('summary');
    expect(existsSync(join(runDir, 'report.md'))).toBe(true);
    // --update-results writes the section into a results file
    const results = join(dir, 'RESULTS.md');
    writeFileSync(results, '# r\n\n## onnx backend: x\n\nkeep me\n');
    const upd = await run(['bench', '--config', join(dir, 'c.json'), '--suite', 'needle', '--policy', 'kvmerger', '--budget', '0.35', '--out', out, '--quiet', '--id', 'slice', '--update-results', results]);
    expect(upd.code).toBe(0);
    const text = readFileSync(results, 'utf8');
    expect(text).toContain('## Benchmark: `t` sweep (kvfold bench)');
    expect(text).toContain('## onnx backend: x\n\nkeep me');
  });

  it('demo --preset smoke says what it runs, then prints the table with a legend (n per row, over-budget rows marked) and the report and plots paths', async () => {
    const out = tmp();
    const r = await run(['demo', '--preset', 'smoke', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.err.split('\n')[0]).toBe(`kvfold demo runs the benchmark's "smoke" preset on the embedded model. Ctrl-C stops after the current item; the run folder resumes.`);
    // Its numbers are a smoke test, and it says so with their n.
    expect(r.err.split('\n')[1]).toBe("Its accuracies are a smoke test, not results (passkey n=1 per row, recall n=1 per row; 95% intervals in report.md); bench/RESULTS.md has the default sweep's figures.");
    expect(r.out).toMatch(/^- passkey: .*n=1 per row/m);
    expect(r.out).toMatch(/^- recall: .*n=1 per row; chance 50%$/m);
    expect(r.out).toMatch(/^- decode tok\/s: median over 3 rounds/m);
    // KVMerger (decodeInterval 0) keeps the generated tokens; evicting policies stay within the budget.
    expect(r.out).toContain('| kvmerger † | 0.5 |');
    expect(r.out).toContain('| h2o | 0.5 |');
    expect(r.out).toMatch(/^- † ended over budget/m);
    const dir = join(out, readdirSync(out)[0]!);
    expect(r.out).toContain(`report: ${join(dir, 'report.md')}\n`);
    expect(r.out).toContain(`plots:  ${join(dir, 'plots')}/ (${readdirSync(join(dir, 'plots')).length} SVG files)`);
    expect(readFileSync(join(dir, 'report.md'), 'utf8')).toContain('- † ended over budget');
  });

  it('the default demo starts with the one statement of what it does and how long it takes; an unknown preset is a usage error', async () => {
    expect(demoIntro('demo')).toBe(`${DEMO_SUMMARY}. Ctrl-C stops after the current item; the run folder resumes.`);
    expect(demoSmokeNote('demo')).toContain('a smoke test, not results (passkey n=20 per row, recall n=4 per row;');
    expect(DEMO_SUMMARY).toMatch(/^kvfold demo runs the benchmark's short sweep \(preset demo\) on the embedded model: .* minutes on 2 cores/);
    const r = await run(['demo', '--preset', 'nosuch']);
    expect(r.code).toBe(2);
    expect(r.err).toContain("argument 'nosuch' is invalid");
  });

  it('usage errors name a command that exists where the user is', async () => {
    const r = await run(['frobnicate']);
    expect(r.err).toContain(`(run ${commandName()} --help for usage)`);
    expect(commandName({ npm_lifecycle_event: 'kvfold' })).toBe('pnpm kvfold');
    expect(commandName({ npm_lifecycle_event: 'demo' })).toBe('pnpm kvfold');
    expect(commandName({})).toBe('npx kvfold');
  });
});
