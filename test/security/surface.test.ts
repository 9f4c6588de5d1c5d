// What a config, a model folder and a run folder can make kvfold write, read or run, beyond the
// per-item tests: the rows of docs/security.md that need a test of their own.
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@kvfold/core';
import { loadModel, parseModelConfig, randomWeights, writeCheckpoint } from '@kvfold/runtime';
import { main } from 'kvfold';
import { marker, ran, temp } from './helpers.js';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)]));
}

async function run(args: string[], cwd: string): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  const code = await main(args, { cwd, stdout: { write: () => undefined }, stderr: { write: (s: string) => err.push(s) } });
  return { code, err: err.join('') };
}

const tinyBench = { name: 'sec', suites: { speed: { throughput: { backends: ['reference'], heads: 1, length: 16, headDim: 2, reps: 1 }, decode: null, scaling: null } }, policies: ['window'], budgets: [0.5] };

describe('attack surface: configs, model folders and run folders', () => {
  it('a bench config writes only inside <bench.output>/<run id>, and its name cannot leave that folder', async () => {
    const cwd = temp();
    writeFileSync(join(cwd, 'c.json'), JSON.stringify({ bench: { ...tinyBench, output: 'runs' } }));
    expect((await run(['bench', '--config', 'c.json', '--quiet'], cwd)).code).toBe(0);
    const written = files(cwd).map((f) => relative(cwd, f));
    const runs = readdirSync(join(cwd, 'runs'));
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d-]+-sec$/);
    expect(written.filter((f) => f !== 'c.json' && !f.startsWith(join('runs', runs[0]!) + '/'))).toEqual([]);
    writeFileSync(join(cwd, 'd.json'), JSON.stringify({ bench: { ...tinyBench, name: '../../escape' } }));
    const bad = await run(['bench', '--config', 'd.json', '--quiet'], cwd);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('/bench/name');
  });

  it('a model folder is data only: auto_map, trust_remote_code and code files in it are never run', async () => {
    const dir = temp('kvfold-sec-model-');
    const config = parseModelConfig({ model_type: 'llama', vocab_size: 258, hidden_size: 16, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, max_position_embeddings: 64, kvfold: { tokenizer: 'bytes' } });
    await writeCheckpoint(dir, config, randomWeights(config, 2));
    const json = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...json, auto_map: { AutoModelForCausalLM: 'modeling_evil.Model' }, trust_remote_code: true }));
    for (const f of ['modeling_evil.js', 'modeling_evil.mjs', 'index.js']) writeFileSync(join(dir, f), marker('__kvf_sec_model_code'));
    const model = await loadModel(dir, { engine: 'cpu' });
    expect(model.config.layers).toBe(1);
    model.dispose();
    expect(ran('__kvf_sec_model_code')).toBe(false);
  });

  it('a run folder\'s stored config is checked like --config: no native folder, plugins only under the plugin rules', async () => {
    const cwd = temp();
    writeFileSync(join(cwd, 'package.json'), '{"name": "project"}');
    const pkg = join(cwd, 'node_modules', 'not-a-plugin');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'not-a-plugin', type: 'module', main: 'index.js' }));
    writeFileSync(join(pkg, 'index.js'), marker('__kvf_sec_resume_plugin'));
    const nativeDir = temp('kvfold-sec-native-');
    writeFileSync(join(nativeDir, 'evil.cjs'), marker('__kvf_sec_resume_native'));
    writeFileSync(join(nativeDir, 'manifest.json'), JSON.stringify({ onnxruntimeNode: '1.30.0', ortApiVersion: 29, addon: 'evil.cjs', cpuLibrary: 'x.so', builtAt: 'x' }));
    const stored = (document: unknown) => JSON.stringify({ hash: 'a'.repeat(64), createdAt: 'then', document });
    const a = join(cwd, 'a');
    mkdirSync(a);
    const speed = { throughput: { backends: [{ name: 'onnx', options: { nativeDir } }], heads: 1, length: 16, headDim: 2, reps: 1 }, decode: null, scaling: null };
    writeFileSync(join(a, 'config.json'), stored({ bench: { ...tinyBench, suites: { speed } } }));
    const r1 = await run(['bench', '--resume', 'a', '--quiet'], cwd);
    expect(r1.code).toBe(2);
    expect(r1.err).toMatch(/\[KVF_CONFIG\].*nativeDir: unknown property "nativeDir"/s);
    const b = join(cwd, 'b');
    mkdirSync(b);
    writeFileSync(join(b, 'config.json'), stored({ plugins: ['not-a-plugin'], bench: tinyBench }));
    const r2 = await run(['bench', '--resume', 'b', '--quiet'], cwd);
    expect(r2.code).toBe(2);
    expect(r2.err).toContain(`[${ErrorCode.InvalidPlugin}]`);
    expect(ran('__kvf_sec_resume_plugin')).toBe(false);
    expect(ran('__kvf_sec_resume_native')).toBe(false);
  });
});
