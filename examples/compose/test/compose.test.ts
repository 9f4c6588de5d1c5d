import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, ErrorCode, type KVFoldError } from '@kvfold/core';
import { exampleDir, formatResult, readConfig, runConfig } from '@kvfold/example-compose';

const shipped = readConfig(resolve(exampleDir, 'kvfold.config.json')) as Record<string, unknown>;
const errorOf = (p: Promise<unknown>) => p.then(() => { throw new Error('expected an error'); }, (e: unknown) => e as KVFoldError);

describe('compose example', () => {
  it('loads the plugin and backend packages named in the config, validates it and runs it', async () => {
    const r = await runConfig(shipped, { length: 96, steps: 4 });
    expect(r.plugins).toEqual(['@kvfold/backend-tfjs', 'kvfold-policy-tova']);
    expect(r.config.backend?.name).toBe('tfjs');
    expect(r.backend).toMatch(/^tfjs .* on (wasm|cpu|tensorflow)/);
    expect(r.config.policy).toEqual({ name: 'tova', budget: 0.35, options: { scope: 'layer', decode: 'evict' } });
    expect(r.budget).toBe(34);
    // TOVA keeps exactly the budget, always the newest token, at prefill and after every step.
    expect(r.prefillLength).toBe(34);
    expect(r.keptPositions.at(-1)).toBe(95);
    expect(r.stepLengths).toEqual([34, 34, 34, 34]);
    expect(r.finalPositions.at(-1)).toBe(99);
    expect(formatResult(r)).toMatch(/policy: +tova \{"scope":"layer","decode":"evict"\}, budget 0.35 = 34 of 96 slots/);
  });
  it('reports every invalid field of the invalid config, after loading its plugins', async () => {
    const err = await errorOf(runConfig(readConfig(resolve(exampleDir, 'invalid.config.json'))));
    expect(err).toBeInstanceOf(ConfigError);
    const paths = (err as ConfigError).issues.map((i) => `${i.path} ${i.rule}`);
    expect(paths).toEqual(expect.arrayContaining(['/backend/options/engine enum', '/policy/budget oneOf', '/policy/options/scope enum']));
    expect((err as ConfigError).issues.find((i) => i.path === '/policy/options/scope')?.allowed).toEqual(['layer', 'head']);
  });
  it('names a plugin package that is not installed in the project', async () => {
    const err = await errorOf(runConfig({ ...shipped, plugins: ['@kvfold/backend-tfjs', 'kvfold-policy-missing'] }));
    expect(err.code).toBe(ErrorCode.UnknownPlugin);
    expect(err.message).toMatch(/^plugin "kvfold-policy-missing" could not be loaded: package not found/);
  });
  it('resolves plugins from the user project only: elsewhere they are missing, and file paths are refused', async () => {
    const elsewhere = mkdtempSync(join(tmpdir(), 'kvfold-compose-'));
    expect((await errorOf(runConfig(shipped, { from: elsewhere }))).message).toMatch(/plugin "@kvfold\/backend-tfjs" could not be loaded: package not found/);
    const err = await errorOf(runConfig({ ...shipped, plugins: ['../third-party-plugin/dist/index.js'] }));
    expect(err.code).toBe(ErrorCode.UnknownPlugin);
    expect(err.message).toMatch(/file paths are not loaded from configs unless allowPaths is set/);
  });
});
