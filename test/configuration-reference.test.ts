import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { KVFold } from '@kvfold/core';
import reference from '@kvfold/backend-reference';
import tfjs from '@kvfold/backend-tfjs';
import onnx from '@kvfold/backend-onnx';
import baselines from '@kvfold/policy-baselines';
import h2o from '@kvfold/policy-h2o';
import cam from '@kvfold/policy-cam';
import kvmerger from '@kvfold/policy-kvmerger';
import snapkv from '@kvfold/policy-snapkv';
import knorm from '@kvfold/policy-knorm';
import { describeType, renderConfigurationReference } from './configuration-reference.js';

const page = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));
// Everything kvfold ships; third-party plugins (like the TOVA example) document themselves.
const kv = KVFold.create({ plugins: [reference, tfjs, onnx, baselines, h2o, cam, kvmerger, snapkv, knorm] });

describe('docs/configuration.md', () => {
  it('is generated from the composed schema and up to date', () => {
    const rendered = renderConfigurationReference(kv);
    if (process.env.KVFOLD_WRITE_DOCS === '1') writeFileSync(page, rendered);
    expect(readFileSync(page, 'utf8'), 'docs/configuration.md is stale: run `pnpm run docs` (or KVFOLD_WRITE_DOCS=1 npx vitest run test/configuration-reference.test.ts)').toBe(rendered);
  });
  it('lists every registered policy and backend with each of its options', () => {
    const text = renderConfigurationReference(kv);
    for (const { definition } of [...kv.policies.list(), ...kv.backends.list()]) {
      const kind = kv.policies.has(definition.name) ? 'policy' : 'backend';
      expect(text).toContain(`### ${kind} \`${definition.name}\``);
      for (const option of Object.keys((definition.schema as { properties?: object }).properties ?? {})) expect(text).toContain(`| \`${option}\` |`);
    }
  });
  it('describes value ranges, alternatives and nested objects', () => {
    expect(describeType({ type: 'number', exclusiveMinimum: 0, maximum: 1 })).toBe('number in (0, 1]');
    expect(describeType({ type: 'integer', minimum: 1 })).toBe('integer ≥ 1');
    expect(describeType({ oneOf: [{ type: 'number', minimum: 0, exclusiveMaximum: 1 }, { type: 'integer', minimum: 1 }] })).toBe('number in [0, 1) or integer ≥ 1');
    expect(describeType({ type: 'object', required: ['mode'], properties: { mode: { const: 'eq4' }, iterations: { type: 'integer', minimum: 1, maximum: 1000 } } })).toBe('{ mode: `"eq4"`, iterations?: integer in [1, 1000] }');
    expect(describeType({ enum: ['mean', 'max'] })).toBe('`"mean"`, `"max"`');
  });
});
