import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, type KVFold } from '@kvfold/core';
import { backendLabel, createKVFold, kvfoldSchema, preset, resolveBenchConfig, PRESET_NAMES } from '../src/index.js';

let kv: KVFold;
beforeAll(async () => {
  kv = await createKVFold();
});

function issues(doc: unknown): { path: string; message: string }[] {
  try {
    resolveBenchConfig(kv, doc);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).issues];
  }
  throw new Error('expected a ConfigError');
}

describe('benchmark config', () => {
  it('an empty bench section is the default sweep with every suite and defaults filled in', () => {
    const c = resolveBenchConfig(kv, { bench: {} });
    expect(c.suites).toEqual(['needle', 'fidelity', 'perplexity', 'speed']);
    expect([...new Set(c.variants.map((v) => v.label))]).toEqual(['full', 'window', 'h2o', 'cam', 'kvmerger']);
    // full once at budget 1, every other policy at 0.5, 0.35, 0.2
    expect(c.variants.map((v) => v.id)).toEqual(['full@1', ...['window', 'h2o', 'cam', 'kvmerger'].flatMap((p) => [0.5, 0.35, 0.2].map((b) => `${p}@${b}`))]);
    expect(c.bench.suites.needle).toMatchObject({ lengths: [256, 512, 1024, 2048], samples: 2, question: 'after-compression', recall: { pairs: [4] } });
    expect(c.bench.suites.speed?.scaling).toMatchObject({ lengths: [1024, 2048, 4096, 8192, 16384, 32768], backend: 'reference' });
    expect(c.variants.find((v) => v.policy === 'kvmerger')!.options).toMatchObject({ eps: 0.75 });
    expect(c.document.seed).toBe(0);
  });

  it('adds the full baseline unless told not to, and keeps labelled variants of one policy apart', () => {
    const c = resolveBenchConfig(kv, { bench: { policies: ['h2o', { name: 'kvmerger', label: 'kvm-paper', options: { mode: 'paper' } }, 'kvmerger'], budgets: [0.5] } });
    expect(c.variants.map((v) => v.id)).toEqual(['full@1', 'h2o@0.5', 'kvm-paper@0.5', 'kvmerger@0.5']);
    expect(c.variants[2]!.options.mode).toBe('paper');
    const nb = resolveBenchConfig(kv, { bench: { policies: ['h2o'], budgets: [0.5], baseline: false } });
    expect(nb.variants.map((v) => v.id)).toEqual(['h2o@0.5']);
  });

  it('names the JSON path of every problem', () => {
    const found = issues({
      bench: {
        budgets: [0.5, 1.5, 0],
        policies: ['h2o', { name: 'kvmerger', options: { eps: 3 } }, 'nosuch'],
        suites: { needle: { depths: [2] }, bogus: {} },
      },
    });
    const paths = found.map((i) => i.path);
    expect(paths).toContain('/bench/budgets/1');
    expect(paths).toContain('/bench/budgets/2');
    expect(paths).toContain('/bench/policies/1/options/eps');
    expect(paths).toContain('/bench/policies/2');
    expect(paths).toContain('/bench/suites/bogus');
    expect(paths).toContain('/bench/suites/needle/depths/0');
    expect(found.find((i) => i.path === '/bench/suites/bogus')!.message).toContain('needle, fidelity, perplexity, speed');
    expect(found.find((i) => i.path === '/bench/policies/2')!.message).toContain('"kvmerger"');
  });

  it('requires a bench section, rejects duplicate labels and unknown speed labels', () => {
    expect(issues({}).map((i) => i.path)).toContain('/bench');
    expect(issues({ bench: { policies: ['h2o', 'h2o'] } })[0]!.path).toBe('/bench/policies/1');
    expect(issues({ bench: { suites: { speed: { scaling: { policies: ['nope'] } } } } })[0]!.path).toBe('/bench/suites/speed/scaling/policies/0');
  });

  it('the hash ignores the output folder and $schema but not the sweep', () => {
    const a = resolveBenchConfig(kv, { bench: { output: 'x' } }).hash;
    const b = resolveBenchConfig(kv, { $schema: 'y', bench: { output: 'z' } }).hash;
    const c = resolveBenchConfig(kv, { bench: { budgets: [0.5] } }).hash;
    expect(a).toBe(b);
    expect(a).not.toBe(c);
  });

  it('keeps backend options as written (the backend fills its own defaults), so labels show only what was chosen', () => {
    const cfg = resolveBenchConfig(kv, { bench: { suites: { speed: { throughput: { backends: ['reference', { name: 'tfjs', options: { observeBlock: 4096 } }] } } } } });
    const backends = cfg.bench.suites.speed?.throughput?.backends ?? [];
    expect(backends[1]).toEqual({ name: 'tfjs', options: { observeBlock: 4096 } });
    expect(backends.map(backendLabel)).toEqual(['reference', 'tfjs(observeBlock=4096)']);
    // still checked against the backend's schema
    expect(issues({ bench: { suites: { speed: { throughput: { backends: [{ name: 'tfjs', options: { observeBlock: -1 } }] } } } } }).map((i) => i.path)).toContain('/bench/suites/speed/throughput/backends/0/options/observeBlock');
  });

  it('every preset is valid', () => {
    for (const name of PRESET_NAMES) expect(() => resolveBenchConfig(kv, preset(name))).not.toThrow();
  });

  it('the composed schema accepts a runtime config or a bench config, and lists the registered names', () => {
    const s = kvfoldSchema(kv) as { anyOf: unknown[]; properties: Record<string, { properties?: Record<string, unknown> }> };
    expect(s.anyOf).toEqual([{ required: ['policy'] }, { required: ['bench'] }]);
    expect(JSON.stringify(s.properties.bench)).toContain('"kvmerger"');
    expect(JSON.stringify(s.properties.bench)).toContain('"onnx"');
  });
});
