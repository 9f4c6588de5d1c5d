import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BackendUnavailableError, ErrorCode } from '@kvfold/core';
import {
  Progress,
  TRANSFORMERS_INSTALL_HINT,
  createKVFold,
  importTransformersPeer,
  missingPackage,
  resolveBenchConfig,
  runBench,
  type BenchMetrics,
  type DecodeItem,
  type ItemRecord,
  type NeedleItem,
} from '../src/index.js';
import { tempDir } from './helpers/tiny-model.js';

describe('bench on the transformers.js runtime, next to tfjs', () => {
  it('runs needle and decode speed on both runtimes with the same prompts, and reports the rows side by side', async () => {
    const kv = await createKVFold();
    const doc = {
      seed: 0,
      bench: {
        name: 'runtimes',
        model: 'embedded',
        policies: ['full', 'h2o', 'kvmerger'],
        budgets: [0.5],
        runtimes: ['tfjs', 'transformers.js'],
        suites: {
          needle: { lengths: [256], depths: [0.25, 0.75], samples: 1, recall: null },
          speed: { throughput: null, scaling: null, decode: { prompt: 96, tokens: 4, rounds: 1 } },
        },
      },
    };
    const config = resolveBenchConfig(kv, doc);
    expect(config.variants.map((v) => v.id)).toEqual(['full@1', 'h2o@0.5', 'kvmerger@0.5', 'full@1@transformers.js', 'h2o@0.5@transformers.js', 'kvmerger@0.5@transformers.js']);
    const dir = join(tempDir(), 'run');
    const r = await runBench(kv, config, { dir, progress: new Progress('quiet'), command: 'test' });
    expect(r.done).toBe(r.total);
    const items = readFileSync(join(dir, 'predictions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as ItemRecord);
    const needle = items.filter((i) => i.suite === 'needle');
    expect(needle).toHaveLength(12);
    // Same prompt, policy, budget and seed on both runtimes: the same greedy answer and the same kept slots.
    for (const i of needle.filter((x) => !x.variant!.endsWith('@transformers.js'))) {
      const twin = needle.find((x) => x.key === i.key.replace(i.variant!, `${i.variant}@transformers.js`))!;
      const [a, b] = [i.data as NeedleItem, twin.data as NeedleItem];
      expect(b.predicted).toBe(a.predicted);
      expect(b.keptSlots).toBe(a.keptSlots);
      expect(b.contextTokens).toBe(a.contextTokens);
    }
    const decode = items.filter((i) => i.suite === 'speed').map((i) => [i.variant!, i.data as DecodeItem] as const);
    expect(decode).toHaveLength(6);
    for (const [id, d] of decode) {
      expect(d.tokensPerSecond).toBeGreaterThan(0);
      const twin = decode.find(([x]) => x === `${id}@transformers.js`);
      if (!twin) continue;
      // The same kept slots. H2O's decode steps on tfjs evict in place (KVKernels.editView), which leaves one
      // spare row per kv head and layer that the next token fills: physical bytes one row above the
      // transformers.js cache, whose decoder builds its caches itself (no in-place path).
      expect(twin[1].finalSlots).toBe(d.finalSlots);
      const row = twin[1].finalBytes / twin[1].finalSlots;
      expect(d.finalBytes).toBe(twin[1].finalBytes + (id.startsWith('h2o') ? row : 0));
    }
    const report = readFileSync(join(dir, 'report.md'), 'utf8');
    expect(report).toContain('| kvmerger (transformers.js) | 0.5 |');
    expect(report).toContain('Rows marked (transformers.js)');
    const metrics = JSON.parse(readFileSync(join(dir, 'metrics.json'), 'utf8')) as BenchMetrics;
    expect(metrics.summary.rows).toHaveLength(6);
  });

  it('rejects an unknown runtime by its JSON path', async () => {
    const kv = await createKVFold();
    expect(() => resolveBenchConfig(kv, { bench: { runtimes: ['pytorch'] } })).toThrow(/\/bench\/runtimes\/0/);
  });
});

describe("the transformers.js runtime's optional peers", () => {
  // The error Node itself throws when a module in a folder without node_modules imports `body`'s
  // package, as in an install without the peer (Vitest's aliases would find the workspace packages, so
  // a child process makes the import and hands the error back).
  const importFromNowhere = (body: string) => {
    const file = join(tempDir('kvfold-peer-'), 'probe.mjs');
    writeFileSync(file, body);
    const script = `import(${JSON.stringify(pathToFileURL(file).href)}).then(() => console.log('{}'), (e) => console.log(JSON.stringify({ name: e.name, message: e.message, code: e.code })))`;
    let out: { name?: string; message?: string; code?: string };
    try {
      out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: dirname(file), encoding: 'utf8' })) as typeof out;
    } finally {
      rmSync(dirname(file), { recursive: true, force: true });
    }
    const error = out.name === 'SyntaxError' ? new SyntaxError(out.message) : Object.assign(new Error(out.message), { code: out.code });
    return () => Promise.reject(error);
  };

  it.each(['@huggingface/transformers', '@kvfold/transformers'] as const)('a missing %s is a BackendUnavailableError naming it and the install commands, offline too', async (peer) => {
    const err = await importTransformersPeer(peer, importFromNowhere(`export * from '${peer}';`)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BackendUnavailableError);
    const e = err as BackendUnavailableError;
    expect(e.code).toBe(ErrorCode.BackendUnavailable);
    expect(e.details).toMatchObject({ runtime: 'transformers.js', missing: peer });
    expect(e.message).toContain(`needs ${peer}, which is not installed`);
    expect(e.message).toContain(TRANSFORMERS_INSTALL_HINT);
    expect(e.message).toContain('ONNXRUNTIME_NODE_INSTALL=skip npm install @kvfold/transformers @huggingface/transformers@^4.3.1');
    expect((e.cause as { code?: string }).code).toBe('ERR_MODULE_NOT_FOUND');
  });

  it('names transformers.js when @kvfold/transformers is there but its own peer is not', async () => {
    const load = importFromNowhere(`export * from '@huggingface/transformers';`);
    await expect(importTransformersPeer('@kvfold/transformers', load)).rejects.toThrow('needs @huggingface/transformers (imported by @kvfold/transformers), which is not installed');
  });

  it('passes other import failures through unchanged', async () => {
    await expect(importTransformersPeer('@kvfold/transformers', importFromNowhere(`export * from 'some-other-package';`))).rejects.toMatchObject({ code: 'ERR_MODULE_NOT_FOUND' });
    await expect(importTransformersPeer('@kvfold/transformers', importFromNowhere('export const = 1;'))).rejects.toBeInstanceOf(SyntaxError);
    const broken = new Error('boom');
    await expect(importTransformersPeer('@kvfold/transformers', () => Promise.reject(broken))).rejects.toBe(broken);
  });

  it("reads the missing package from Node's and Vite's messages", () => {
    expect(missingPackage(new Error("Cannot find package '@huggingface/transformers' imported from /x/y.js"))).toBe('@huggingface/transformers');
    expect(missingPackage(new Error("Cannot find module '@kvfold/transformers/dist/index.js'"))).toBe('@kvfold/transformers');
    expect(missingPackage(new Error('Failed to load url @huggingface/transformers (resolved id: @huggingface/transformers)'))).toBe('@huggingface/transformers');
    expect(missingPackage(new Error('boom'))).toBeUndefined();
    expect(missingPackage('not an error')).toBeUndefined();
  });
});
