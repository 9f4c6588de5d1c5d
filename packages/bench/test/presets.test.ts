import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PRESET_NAMES, createKVFold, preset, resolveBenchConfig } from '../src/index.js';

describe('bench/*.json configs', () => {
  it.each([...PRESET_NAMES])('bench/%s.json equals its preset and validates', async (name) => {
    const file = fileURLToPath(new URL(`../../../bench/${name}.json`, import.meta.url));
    const doc = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    const { $schema, ...rest } = doc;
    expect($schema).toBe('../packages/cli/kvfold.schema.json');
    expect(rest).toEqual(preset(name));
    const kv = await createKVFold();
    expect(resolveBenchConfig(kv, doc).hash).toBe(resolveBenchConfig(kv, preset(name)).hash);
  });
});

describe('bench/default-in-prompt.json', () => {
  it('is the default sweep with the question inside the compressed prompt, and validates', async () => {
    const file = fileURLToPath(new URL('../../../bench/default-in-prompt.json', import.meta.url));
    const { $schema: _s, ...doc } = JSON.parse(readFileSync(file, 'utf8')) as { $schema: string; bench: { name: string; suites: { needle: Record<string, unknown> } } };
    const want = preset('default') as { bench: { name: string; suites: { needle: Record<string, unknown> } } };
    want.bench.name = 'default-in-prompt';
    want.bench.suites.needle = { ...want.bench.suites.needle, question: 'in-prompt' };
    expect(doc).toEqual(want);
    resolveBenchConfig(await createKVFold(), doc);
  });
});
